"""The ``radam`` optimizer (Liu et al. 2020, "On the Variance of the Adaptive
Learning Rate and Beyond"), which the Admin paper trains with.

It behaves like the RAdam that Transformer-Clinic's recipes used, which differs
from ``torch.optim.RAdam`` in two ways: weight decay is decoupled (applied to
the weights, scaled by the learning rate), and while the variance of the
adaptive learning rate is intractable (rho_t < 5, the first few steps) the
weights get no gradient update at all, where torch would take an SGD-momentum
step.  ``--radam-degenerated-to-sgd`` selects torch's behaviour instead.
"""

import ast
import math
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
    radam_degenerated_to_sgd: bool = field(
        default=False,
        metadata={"help": "take SGD-momentum steps while rho_t < 5 (torch's RAdam)"},
    )
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
        self._optimizer = RAdam(params, **self.optimizer_config)

    @property
    def optimizer_config(self) -> dict[str, Any]:
        lr = self.cfg.lr[0] if isinstance(self.cfg.lr, Collection) else self.cfg.lr
        return {
            "lr": lr,
            "betas": parse_betas(self.cfg.adam_betas),
            "eps": self.cfg.adam_eps,
            "weight_decay": self.cfg.weight_decay,
            "degenerated_to_sgd": self.cfg.radam_degenerated_to_sgd,
        }

    @property
    def supports_flat_params(self) -> bool:
        return True


class RAdam(torch.optim.Optimizer):
    """Rectified Adam with decoupled weight decay."""

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        degenerated_to_sgd: bool = False,
    ):
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "degenerated_to_sgd": degenerated_to_sgd,
        }
        super().__init__(params, defaults)

    @property
    def supports_memory_efficient_fp16(self) -> bool:
        return True

    @property
    def supports_flat_params(self) -> bool:
        return True

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            rho_inf = 2.0 / (1.0 - beta2) - 1.0
            for p in group["params"]:
                if p.grad is None:
                    continue
                # Moments and the update are kept in fp32 even for half-precision weights.
                grad = p.grad.float()
                weights = p.float() if p.dtype in (torch.float16, torch.bfloat16) else p
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(weights)
                    state["exp_avg_sq"] = torch.zeros_like(weights)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                t = state["step"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)

                if group["weight_decay"] != 0:
                    weights.mul_(1 - group["weight_decay"] * group["lr"])
                beta2_t = beta2**t
                rho_t = rho_inf - 2 * t * beta2_t / (1 - beta2_t)
                bias1 = 1 - beta1**t
                if rho_t >= 5:
                    rect = math.sqrt(
                        (1 - beta2_t)
                        * (rho_t - 4)
                        * (rho_t - 2)
                        * rho_inf
                        / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
                    )
                    denom = exp_avg_sq.sqrt().add_(group["eps"])
                    weights.addcdiv_(exp_avg, denom, value=-group["lr"] * rect / bias1)
                elif group["degenerated_to_sgd"]:
                    weights.add_(exp_avg, alpha=-group["lr"] / bias1)
                if weights is not p:
                    p.copy_(weights)
        return loss
