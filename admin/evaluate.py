"""Translate the test set with ``fairseq-generate`` and score it.

    python -m admin.evaluate --data-bin DIR --average RUN/average.json \\
        --hparams '{"beam": 5, "lenpen": 1.0, "max_tokens": 4096}' [--compound-split] \\
        [--beam N] [--lenpen X] [--source-lang de --target-lang en] [--device auto|cuda|cpu] \\
        [--ref-raw FILE [--sacrebleu-lowercase]] [--out-dir RUN] \\
        [--scores RUN/scores.json] [--log FILE] [--keep-checkpoints none|last|all]

``--hparams`` holds fairseq-generate options (beam and lenpen may come from there
or from the flags; ``gen_subset`` defaults to test).  The language pair is read
from the data-bin unless given.  Writes into ``--out-dir`` (default: the folder
of ``average.json``): ``generate.txt`` (fairseq-generate's output), ``hyp.tok.txt``
/ ``ref.tok.txt`` (BPE removed, sorted by sentence id), ``hyp.detok.txt`` /
``ref.detok.txt`` (Moses-detokenized; with ``--ref-raw``, ``ref.detok.txt`` holds the raw
references), ``generate.log`` (its stderr) and ``scores.json``:

* ``bleu_tokenized``: BLEU on the tokenized text with fairseq's own scorer,
  the number the paper reports (equal to fairseq-generate's ``BLEU4``);
* ``sacrebleu``, ``sacrebleu_signature`` and ``sacrebleu_references``: the detokenized
  hypotheses against the raw references (``"raw"``, given by ``--ref-raw``: what published
  sacreBLEU figures use) or, without it, against the detokenized ``T-`` lines
  (``"detokenized T- lines"``: the binarized test targets, as fairseq scores them, where
  words outside the dictionary read ``<<unk>>``; not comparable with published figures).
  ``--sacrebleu-lowercase`` scores case-insensitively (``case:lc`` in the signature), for
  datasets whose recipe lowercases the text (IWSLT'14, Multi30k);
* ``bleu_compound_split`` (``--compound-split``, En-De): fairseq's
  ``compound_split_bleu.sh``, i.e. ``a-b`` -> ``a ##AT##-##AT## b`` on both sides, the
  convention of other En-De papers.  The Admin paper's En-De numbers are
  ``bleu_tokenized`` (Transformer-Clinic's ``eval_wmt_en-de.sh`` splits no compounds).

Tokenized BLEU always scores against the ``T-`` lines.  Every test sentence must come back
translated, else it is an error; a ``--ref-raw`` file must have one line per test sentence.
A run flagged ``diverged`` is scored like any other (``status: diverged`` beside its
BLEU); only one with no averaged checkpoint (none saved, or weights no longer finite:
``average.json``'s ``note``) writes empty text files and null scores.

``--keep-checkpoints none|last|all``: once the scores are written, the run's training
checkpoints are deleted (``none``), all but ``checkpoint_last.pt`` (``last``), or kept
(``all``, the default of this command); ``checkpoint_avg.pt`` stays, and so does every
checkpoint of a run flagged ``diverged`` (:func:`admin.common.run_folder.prune_after_scoring`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from admin.baselines import read_binarized
from admin.common import gpu_lease
from admin.common import run_folder as rf
from admin.common.atomic import atomic_path, atomic_write_text
from admin.common.cli import run_cli
from admin.common.errors import AdminError
from admin.common.fairseq_args import precision, to_argv
from admin.common.fairseq_command import PLUGIN_DIR, parse_json_object
from admin.common.fairseq_import import FAIRSEQ_MAIN, import_fairseq
from admin.common.launch import without_gpu_options
from admin.data.textio import read_lines

TEXT_FILES = ("generate.txt", "hyp.tok.txt", "ref.tok.txt", "hyp.detok.txt", "ref.detok.txt")
# Set by this step; in --hparams they would silently fight it.
RESERVED = frozenset(
    {"path", "remove_bpe", "post_process", "user_dir", "required_batch_size_multiple",
     "source_lang", "target_lang", "results_path"}
)  # fmt: skip
_LINE = re.compile(r"^([HT])-(\d+)\t(.*)$")
_BLEU4 = re.compile(r"^Generate \S+ with beam=\d+: (BLEU4 = .*)$", re.M)
_COMPOUND = re.compile(r"(\S)-(\S)")
REFS_RAW, REFS_DETOK = "raw", "detokenized T- lines"  # scores.json "sacrebleu_references"


def compound_split(line: str) -> str:
    """fairseq's ``compound_split_bleu.sh``, a port of its Perl substitution
    ``s{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g``."""
    return _COMPOUND.sub(r"\1 ##AT##-##AT## \2", line)


def fairseq_bleu(hyps: Sequence[str], refs: Sequence[str]) -> tuple[float, str]:
    """Corpus BLEU-4 exactly as ``fairseq-score`` / ``fairseq-generate`` compute it."""
    from fairseq.data import Dictionary
    from fairseq.scoring.bleu import BleuConfig, Scorer

    vocab = Dictionary()
    scorer = Scorer(BleuConfig(pad=vocab.pad(), eos=vocab.eos(), unk=vocab.unk()))
    for hyp, ref in zip(hyps, refs, strict=True):
        ref_ids = vocab.encode_line(ref, add_if_not_exist=True)
        hyp_ids = vocab.encode_line(hyp, add_if_not_exist=True)
        scorer.add(ref_ids, hyp_ids)
    return scorer.score(), scorer.result_string()


def language_pair(data_bin: Path, subset: str) -> tuple[str, str]:
    """The (source, target) of the data-bin's ``<subset>.<src>-<tgt>.<src>.idx``."""
    pairs = set()
    for path in data_bin.glob(f"{subset}.*-*.*.idx"):
        m = re.match(rf"^{re.escape(subset)}\.([^.-]+)-([^.-]+)\.([^.-]+)\.idx$", path.name)
        if m and m[3] == m[1]:
            pairs.add((m[1], m[2]))
    if len(pairs) != 1:
        found = ", ".join(f"{s}-{t}" for s, t in sorted(pairs)) or "none"
        raise AdminError(
            f"cannot tell the language pair of {data_bin} ({subset!r} pairs: {found}); "
            "give --source-lang and --target-lang"
        )
    return pairs.pop()


def test_set_size(data_bin: Path, subset: str, src: str, tgt: str) -> int:
    """Sentences of the binarized test set, read from its index (no fairseq import)."""
    prefix = data_bin / f"{subset}.{src}-{tgt}.{src}"
    if not Path(f"{prefix}.idx").is_file():
        raise AdminError(f"no binarized {subset} set {prefix}.{{bin,idx}} in {data_bin}")
    return read_binarized(prefix)[1]


def _import_scorer() -> threading.Thread:
    """Import fairseq's BLEU scorer in the background, while fairseq-generate runs in its
    own process: the import (seconds, most of this process's start-up) then costs no
    wall time (measured in docs/slurm-internals.md, "Where an evaluate job's time goes")."""

    def load() -> None:
        logging.getLogger("fairseq").setLevel(logging.WARNING)
        import_fairseq()
        importlib.import_module("fairseq.scoring.bleu")

    thread = threading.Thread(target=load, name="import fairseq", daemon=True)
    thread.start()
    return thread


def parse_generate(text: str, expected: int) -> tuple[list[str], list[str]]:
    """Hypotheses and references, sorted by sentence id; every test sentence must be there."""
    hyps: dict[int, str] = {}
    refs: dict[int, str] = {}
    for line in text.splitlines():
        if m := _LINE.match(line):
            if m[1] == "H":
                hyps[int(m[2])] = m[3].split("\t", 1)[1] if "\t" in m[3] else ""
            else:
                refs[int(m[2])] = m[3]
    if len(hyps) != expected or set(hyps) != set(range(expected)) or hyps.keys() != refs.keys():
        raise AdminError(
            f"fairseq-generate translated {len(hyps)} of the {expected} test sentences "
            "(is --required-batch-size-multiple 1 in effect?)"
        )
    ids = sorted(hyps)
    return [hyps[i] for i in ids], [refs[i] for i in ids]


def detokenize(lines: Sequence[str], lang: str) -> list[str]:
    from sacremoses import MosesDetokenizer

    detok = MosesDetokenizer(lang=lang)
    return [detok.detokenize(line.split()) for line in lines]


def read_raw_references(path: Path, expected: int, subset: str) -> list[str]:
    """The ``--ref-raw`` file, one reference per test sentence (read before generating)."""
    if not path.is_file():
        raise AdminError(
            f"raw references {path} are missing (a data folder prepared before the data step "
            "wrote them? run its prepare step again)"
        )
    refs = read_lines(path)  # split on \n only, as the data step wrote it
    if len(refs) != expected:
        raise AdminError(f"{path} has {len(refs)} lines, the {subset} set {expected}")
    return refs


def generate_hparams(
    hparams_json: str, beam: int | None = None, lenpen: float | None = None, device: str = "auto"
) -> dict[str, Any]:
    """fairseq-generate options: ``--hparams`` merged with ``--beam``/``--lenpen``.  On the
    CPU (``device`` as resolved: :func:`generate_device`) the GPU-only options (``fp16``,
    ...) are dropped: the paper's fp16 decoding is a GPU's."""
    hparams = parse_json_object(hparams_json, "--hparams")
    reserved = sorted(RESERVED & hparams.keys())
    if reserved:
        raise AdminError(f"--hparams sets {', '.join(reserved)}, which the step sets itself")
    for key, flag in (("beam", beam), ("lenpen", lenpen)):
        if flag is not None:
            if key in hparams and hparams[key] != flag:
                raise AdminError(f"--{key} {flag} contradicts {key}={hparams[key]} in --hparams")
            hparams[key] = flag
    if "beam" not in hparams:
        raise AdminError("the beam size is missing: give --beam or 'beam' in --hparams")
    if device == "cpu":
        hparams = {**without_gpu_options(hparams), "cpu": True}
    if "max_tokens" not in hparams and "batch_size" not in hparams:
        hparams["max_tokens"] = 4096
    hparams.setdefault("gen_subset", "test")
    return hparams


@dataclass(frozen=True)
class Request:
    """What one evaluation reads and writes (the CLI's options, checked)."""

    data_bin: Path
    average: Path  # the run's average.json
    hparams: dict[str, Any]  # fairseq-generate options (generate_hparams)
    languages: tuple[str, str] | None = None  # (source, target); None: from the data-bin
    compound_split: bool = False
    ref_raw: Path | None = None
    sacrebleu_lowercase: bool = False
    out_dir: Path | None = None  # default: the folder of average.json
    scores: Path | None = None  # default: OUT/scores.json
    log: Path | None = None  # default: OUT/generate.log


def generate_argv(
    data_bin: Path, checkpoint: Path, src: str, tgt: str, hparams: dict[str, Any]
) -> list[str]:
    return [
        sys.executable, "-m", FAIRSEQ_MAIN, "fairseq_cli.generate", str(data_bin),
        "--user-dir", str(PLUGIN_DIR), "--path", str(checkpoint),
        "--source-lang", src, "--target-lang", tgt, "--remove-bpe",
        *to_argv(hparams),
        # fairseq 0.12 silently drops a last batch that is not a multiple of this
        # (facebookresearch/fairseq#5036); we once lost 4 of 60 sentences to it.
        "--required-batch-size-multiple", "1",
    ]  # fmt: skip


def write_outputs(
    out_dir: Path, scores_path: Path, texts: dict[str, str], scores: dict[str, Any]
) -> None:
    for name, text in texts.items():
        atomic_write_text(out_dir / name, text)
    atomic_write_text(scores_path, json.dumps(scores, indent=2) + "\n")


def evaluate(req: Request) -> dict[str, Any]:
    average = rf.read_json(req.average, "averaging result")
    status = average.get("status")
    out_dir: Path = req.out_dir or req.average.parent
    scores_path: Path = req.scores or out_dir / "scores.json"
    if status == rf.DIVERGED and not average.get("checkpoint"):
        scores = {
            "status": rf.DIVERGED, "bleu_tokenized": None, "sacrebleu": None,
            "sacrebleu_signature": None, "sacrebleu_references": None, "num_sentences": 0,
            "note": average.get("note") or "no averaged checkpoint",
        }  # fmt: skip
        if req.compound_split:
            scores["bleu_compound_split"] = None
        write_outputs(out_dir, scores_path, dict.fromkeys(TEXT_FILES, ""), scores)
        return scores
    if status not in rf.STATUSES or not average.get("checkpoint"):
        raise AdminError(f"{req.average}: status {status!r} has no averaged checkpoint")
    checkpoint = req.average.parent / average["checkpoint"]
    if not checkpoint.is_file():
        raise AdminError(f"averaged checkpoint {checkpoint} (named in {req.average}) is missing")
    hparams = req.hparams
    data_bin = req.data_bin
    subset = hparams["gen_subset"]
    src, tgt = req.languages or language_pair(data_bin, subset)
    expected = test_set_size(data_bin, subset, src, tgt)
    refs_raw = read_raw_references(req.ref_raw, expected, subset) if req.ref_raw else None

    log = req.log or out_dir / "generate.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = generate_argv(data_bin, checkpoint, src, tgt, hparams)
    importing = _import_scorer()
    with atomic_path(out_dir / "generate.txt") as tmp:
        with open(tmp, "w", encoding="utf-8") as out, open(log, "w", encoding="utf-8") as err:
            code = subprocess.run(argv, stdout=out, stderr=err, check=False).returncode
        importing.join()
        if code != 0:
            raise AdminError(f"fairseq-generate failed (exit code {code}); see {log}")
        generated = Path(tmp).read_text(encoding="utf-8")
        hyps, refs = parse_generate(generated, expected)

    bleu, bleu_line = fairseq_bleu(hyps, refs)
    hyps_detok = detokenize(hyps, tgt)
    refs_detok = refs_raw if refs_raw is not None else detokenize(refs, tgt)

    from sacrebleu.metrics import BLEU

    sacre = BLEU(lowercase=req.sacrebleu_lowercase)
    sacre_score = sacre.corpus_score(hyps_detok, [refs_detok])
    scores: dict[str, Any] = {
        "status": status,  # a run flagged diverged is scored too: the verdict is a label
        "bleu_tokenized": bleu,
        "bleu_tokenized_line": bleu_line,
        "sacrebleu": sacre_score.score,
        "sacrebleu_signature": str(sacre.get_signature()),
        "sacrebleu_references": REFS_RAW if refs_raw is not None else REFS_DETOK,
        "num_sentences": expected,
        "checkpoint": average["checkpoint"],
        "beam": hparams["beam"],
        "lenpen": hparams.get("lenpen", 1.0),
        "precision": precision(hparams),
    }
    if m := _BLEU4.search(generated):
        scores["fairseq_generate_line"] = m[1]
    if req.compound_split:
        split_bleu, _ = fairseq_bleu(
            [compound_split(h) for h in hyps], [compound_split(r) for r in refs]
        )
        scores["bleu_compound_split"] = split_bleu
    texts = {
        "hyp.tok.txt": _lines(hyps), "ref.tok.txt": _lines(refs),
        "hyp.detok.txt": _lines(hyps_detok), "ref.detok.txt": _lines(refs_detok),
    }  # fmt: skip
    write_outputs(out_dir, scores_path, texts, scores)
    return scores


def _lines(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m admin.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--data-bin", required=True, type=Path)
    p.add_argument("--average", required=True, type=Path, help="average.json of the run")
    p.add_argument("--hparams", default="{}", help="JSON object of fairseq-generate options")
    p.add_argument("--beam", type=int)
    p.add_argument("--lenpen", type=float)
    p.add_argument("--source-lang")
    p.add_argument("--target-lang")
    p.add_argument("--compound-split", action="store_true",
                   help="also BLEU with compounds split (##AT##), as other En-De papers "
                   "report it")  # fmt: skip
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="auto: fairseq uses a GPU when there is one")  # fmt: skip
    p.add_argument(
        "--ref-raw",
        type=Path,
        help="raw references for sacreBLEU, one per test sentence (default: the detokenized "
        "T- lines, which read <<unk>> for words outside the dictionary)",
    )
    p.add_argument(
        "--sacrebleu-lowercase",
        action="store_true",
        help="sacreBLEU case-insensitive (for lowercased datasets, e.g. IWSLT'14)",
    )
    p.add_argument("--out-dir", type=Path, help="default: the folder of --average")
    p.add_argument("--scores", type=Path, help="default: OUT/scores.json")
    p.add_argument("--log", type=Path, help="fairseq-generate's stderr; default OUT/generate.log")
    p.add_argument("--keep-checkpoints", choices=rf.KEEP_POLICIES, default="all",
                   help="training checkpoints to keep once scored (default: all)")  # fmt: skip
    return p


def request(args: argparse.Namespace) -> Request:
    if bool(args.source_lang) != bool(args.target_lang):
        raise AdminError("give both --source-lang and --target-lang, or neither")
    return Request(
        data_bin=args.data_bin, average=args.average,
        hparams=generate_hparams(
            args.hparams, args.beam, args.lenpen, generate_device(args.device)
        ),
        languages=(args.source_lang, args.target_lang) if args.source_lang else None,
        compound_split=args.compound_split, ref_raw=args.ref_raw,
        sacrebleu_lowercase=args.sacrebleu_lowercase, out_dir=args.out_dir,
        scores=args.scores, log=args.log,
    )  # fmt: skip


def generate_device(device: str) -> str:
    """Where fairseq-generate will run: the GPU unless told cpu or torch sees none."""
    if device == "cpu":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    req = request(args)
    # One device of the machine (gpu_lease); more than the pool has stops here.
    gpus = gpu_lease.need(generate_device(args.device), 1)
    with gpu_lease.hold(gpus, f"admin.evaluate {args.average}", say=_say) as lease:
        if lease.devices:  # leased here, or SLURM's
            _say(lease.note)
        # fairseq-generate inherits this process's environment
        os.environ.update(lease.variables())
        scores = evaluate(req)
    removed = rf.prune_after_scoring(rf.RunFolder(args.average.parent), args.keep_checkpoints)
    if removed:
        print(f"removed {len(removed)} training checkpoints (keep: {args.keep_checkpoints})")
    flagged = " (a run flagged diverged)" if scores["status"] == rf.DIVERGED else ""
    if scores["bleu_tokenized"] is None:
        print(f"nothing to evaluate{flagged}: {scores.get('note', '')}")
    else:
        print(
            f"BLEU {scores['bleu_tokenized']:.2f} (tokenized), sacreBLEU {scores['sacrebleu']:.2f}"
            + flagged
        )
    return 0


def _say(message: str) -> None:
    print(f"admin.evaluate: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    run_cli(main)
