"""Residual variants: their closed-form constants and their fairseq flags.

This is the one place that knows what each variant means.  The fairseq plugin
uses the formulas; the workflow uses :func:`fairseq_flags` to turn a variant
name into command-line flags.  No fairseq import here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The version of the plugin's model code, as far as it decides what a run computes.
# The workflow writes it into each run's recipe, so that a change reruns the runs it
# affects.  Bump it whenever the computation or the initialisation of an existing
# option changes (a new option that is off by default needs no bump).
# 2: --param-init paper (was --ffn-init xavier) also zeroes the q/k/v biases.
MODEL_CODE_VERSION = 2

INIT_TYPES = ("default", "adaptive-profiling", "adaptive", "admin-logn", "deepnet", "rezero")


def admin_logn_omega(num_sublayers: int) -> float:
    """admin-torch's closed-form omega: ``sqrt((N+1)/ln(N+1) - 1)``.

    ``N`` is the number of residual sublayers of the stack (2 per encoder
    layer, 3 per decoder layer).
    """
    if num_sublayers < 1:
        raise ValueError(f"num_sublayers must be >= 1, got {num_sublayers}")
    n1 = num_sublayers + 1
    return math.sqrt(n1 / math.log(n1) - 1.0)


@dataclass(frozen=True)
class DeepNormConstants:
    encoder_alpha: float
    encoder_beta: float
    decoder_alpha: float
    decoder_beta: float


def deepnorm_constants(encoder_layers: int, decoder_layers: int) -> DeepNormConstants:
    """DeepNet's encoder-decoder constants (Wang et al. 2022, Figure 2).

    With N encoder and M decoder layers: encoder alpha = 0.81 (N^4 M)^(1/16),
    beta = 0.87 (N^4 M)^(-1/16); decoder alpha = (3M)^(1/4), beta = (12M)^(-1/4).
    """
    n, m = encoder_layers, decoder_layers
    return DeepNormConstants(
        encoder_alpha=0.81 * (n**4 * m) ** (1 / 16),
        encoder_beta=0.87 * (n**4 * m) ** (-1 / 16),
        decoder_alpha=(3 * m) ** (1 / 4),
        decoder_beta=(12 * m) ** (-1 / 4),
    )


# Pipeline variant name -> (init type, Pre-LN?).  "admin" trains from the
# profile of a separate profiling job.
VARIANTS: dict[str, tuple[str, bool]] = {
    "postln": ("default", False),
    "preln": ("default", True),
    "admin": ("adaptive", False),
    "admin-logn": ("admin-logn", False),
    "deepnet": ("deepnet", False),
    "rezero": ("rezero", False),
}


def needs_profile(variant: str) -> bool:
    return VARIANTS[variant][0] == "adaptive"


def fairseq_flags(
    variant: str, profile: str | None = None, *, profiling: bool = False
) -> list[str]:
    """The ``fairseq-train`` flags that select ``variant``.

    ``profiling=True`` gives the flags of Admin's profiling run instead.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    init_type, pre_ln = VARIANTS[variant]
    if profiling:
        if init_type != "adaptive":
            raise ValueError(f"variant {variant!r} has no profiling run")
        init_type = "adaptive-profiling"
    flags = ["--init-type", init_type]
    if pre_ln:
        flags += ["--encoder-normalize-before", "--decoder-normalize-before"]
    if init_type.startswith("adaptive"):
        if not profile:
            raise ValueError(f"variant {variant!r} needs a profile path")
        flags += ["--admin-profile", str(profile)]
    return flags
