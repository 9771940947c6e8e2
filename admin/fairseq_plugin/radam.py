"""The ``radam`` optimizer (Liu et al. 2020, "On the Variance of the Adaptive
Learning Rate and Beyond"), which the Admin paper trains with.

It wraps ``torch.optim.RAdam`` with decoupled weight decay, as in the
original RAdam code used by Transformer-Clinic (weight decay applied to the
weights directly, scaled by the learning rate).
"""

import ast
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, List  # noqa: UP035  (fairseq's dataclass parser needs typing.List)

import torch
from fairseq.dataclass import FairseqDataclass
from fairseq.optim import FairseqOptimizer, register_optimizer
from omegaconf import II, OmegaConf


@dataclass
class FairseqRAdamConfig(FairseqDataclass):
    adam_betas: Any = field(default="(0.9, 0.999)", metadata={"help": "betas for RAdam"})
    adam_eps: float = field(default=1e-8, metadata={"help": "epsilon for RAdam"})
    weight_decay: float = field(default=0.0, metadata={"help": "decoupled weight decay"})
    lr: List[float] = II("optimization.lr")  # noqa: UP006


def parse_betas(value: Any) -> tuple[float, float]:
    """Betas from the command line ("(0.9, 0.98)") or a config list, never eval'd."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise ValueError(f"--adam-betas must look like '(0.9, 0.98)', got {value!r}") from None
    elif OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    betas = tuple(float(b) for b in value)
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"--adam-betas needs two values in [0, 1), got {value!r}")
    return betas  # type: ignore[return-value]


@register_optimizer("radam", dataclass=FairseqRAdamConfig)
class FairseqRAdam(FairseqOptimizer):
    def __init__(self, cfg: FairseqRAdamConfig, params: Any):
        super().__init__(cfg)
        self._optimizer = torch.optim.RAdam(
            params, decoupled_weight_decay=True, **self.optimizer_config
        )

    @property
    def optimizer_config(self) -> dict[str, Any]:
        lr = self.cfg.lr[0] if isinstance(self.cfg.lr, Collection) else self.cfg.lr
        return {
            "lr": lr,
            "betas": parse_betas(self.cfg.adam_betas),
            "eps": self.cfg.adam_eps,
            "weight_decay": self.cfg.weight_decay,
        }

    @property
    def supports_flat_params(self) -> bool:
        return True
