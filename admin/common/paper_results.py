"""Test BLEU reported in the Admin paper (Liu et al., EMNLP 2020), the one place
that holds them.  Tokenized BLEU (fairseq's), as the paper reports it.

``PAPER[dataset][variant][depth]`` is ``(mean, std or None)`` or ``DIVERGED``.
Cells the paper does not report are absent.
"""

from __future__ import annotations

from typing import Final

DIVERGED: Final = "diverged"

PaperCell = tuple[float, float | None] | str

PAPER: Final[dict[str, dict[str, dict[str, PaperCell]]]] = {
    # Table 1 / Figure: WMT'14 En-De, 6L-6L, 12L-12L and 18L-18L.
    "wmt14_en_de": {
        "postln": {"6-6": (27.80, None), "12-12": DIVERGED, "18-18": DIVERGED},
        "preln": {"6-6": (27.27, None), "12-12": (28.26, None), "18-18": (28.38, None)},
        "admin": {"6-6": (27.90, None), "12-12": (28.58, None), "18-18": (29.03, None)},
    },
    # WMT'14 En-Fr: 6L-6L and 60L-12L.
    "wmt14_en_fr": {
        "postln": {"6-6": (41.29, None), "60-12": DIVERGED},
        "preln": {"6-6": (40.74, None), "60-12": (43.10, None)},
        "admin": {"6-6": (41.47, None), "60-12": (43.80, None)},
    },
    # IWSLT'14 De-En: 6L-6L transformer_iwslt_de_en, mean ± std over 5 seeds.
    "iwslt14_de_en": {
        "postln": {"6-6": (35.64, 0.23)},
        "preln": {"6-6": (35.50, 0.04)},
        "admin": {"6-6": (35.67, 0.15)},
    },
}


def has_paper_results(dataset: str) -> bool:
    """Whether the paper reports any number for ``dataset`` (Multi30k and the demo: no)."""
    return dataset in PAPER


def paper_cell(dataset: str, variant: str, depth: str) -> PaperCell | None:
    return PAPER.get(dataset, {}).get(variant, {}).get(depth)


def format_paper_cell(cell: PaperCell | None) -> str:
    if cell is None:
        return ""
    if cell == DIVERGED:
        return DIVERGED
    mean, std = cell
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"
