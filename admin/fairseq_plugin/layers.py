"""Transformer layers whose residual connections follow an ``--init-type``.

fairseq's layers compute each residual as ``residual_connection(x, residual)``
= ``residual + x``.  These subclasses only replace that method, so everything
else (attention, dropout, LayerNorm placement) is fairseq's own code:

* omega variants (adaptive, adaptive-profiling, admin-logn, deepnet):
  ``residual * omega_i + x`` with ``omega_i`` a vector of width ``embed_dim``
  (trainable for the Admin variants, a constant buffer for DeepNet);
* rezero: ``residual + alpha_i * x`` with a scalar ``alpha_i`` initialised to
  0 and no LayerNorm.

``init_type == "default"`` never reaches these classes: the model then builds
fairseq's own layers, so it computes exactly what ``transformer`` computes.
"""

from __future__ import annotations

from typing import Any

import torch
from fairseq.modules.transformer_layer import (
    TransformerDecoderLayerBase,
    TransformerEncoderLayerBase,
)
from torch import Tensor, nn

from admin.common.profiling import RunningVariance

PARAM_INITS = ("fairseq", "paper")
OMEGA_TYPES = ("adaptive", "adaptive-profiling", "admin-logn", "deepnet")


class _ResidualVariant:
    """Mixin holding the per-sublayer residual parameters of one layer."""

    n_sublayers: int
    recorder: RunningVariance | None

    def _setup_residual(self, init_type: str, embed_dim: int, omega: float) -> None:
        self.init_type = init_type
        self._sublayer = 0
        self.recorder = None  # set by the model for the profiling forward pass
        shape = (self.n_sublayers, embed_dim)
        if init_type in ("adaptive", "adaptive-profiling", "admin-logn"):
            self.omega = nn.Parameter(torch.full(shape, float(omega)))
        elif init_type == "deepnet":
            # DeepNorm's alpha is a constant, not a learned scale.
            self.register_buffer("omega", torch.full(shape, float(omega)))
        elif init_type == "rezero":
            self.rezero_alpha = nn.Parameter(torch.zeros(self.n_sublayers))
            for name in ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"):
                if getattr(self, name, None) is not None:
                    setattr(self, name, nn.Identity())
        else:
            raise ValueError(f"layer built for unsupported init type {init_type!r}")

    def residual_connection(self, x: Tensor, residual: Tensor) -> Tensor:
        i = self._sublayer
        self._sublayer += 1
        if self.init_type == "rezero":
            return residual + self.rezero_alpha[i] * x
        omega = self.omega[i]
        if self.recorder is not None:
            with torch.no_grad():
                omega.fill_(self.recorder.value)
            self.recorder.step(residual, omega, x)
        return residual * omega + x

    def set_omegas(self, values: list[float]) -> None:
        with torch.no_grad():
            for i, value in enumerate(values):
                self.omega[i].fill_(value)


class AdminEncoderLayer(_ResidualVariant, TransformerEncoderLayerBase):
    n_sublayers = 2  # self-attention, feed-forward

    def __init__(self, cfg: Any, init_type: str, omega: float = 1.0, return_fc: bool = False):
        super().__init__(cfg, return_fc=return_fc)
        self._setup_residual(init_type, cfg.encoder.embed_dim, omega)

    def forward(self, *args: Any, **kwargs: Any):
        self._sublayer = 0
        return super().forward(*args, **kwargs)


class AdminDecoderLayer(_ResidualVariant, TransformerDecoderLayerBase):
    n_sublayers = 3  # self-attention, cross-attention, feed-forward

    def __init__(self, cfg: Any, init_type: str, omega: float = 1.0, no_encoder_attn: bool = False):
        if no_encoder_attn:
            raise ValueError("admin_transformer decoder layers need encoder attention")
        super().__init__(cfg, no_encoder_attn=False)
        self._setup_residual(init_type, cfg.decoder.embed_dim, omega)

    def forward(self, x: Tensor, encoder_out: Tensor | None = None, *args: Any, **kwargs: Any):
        if encoder_out is None:
            raise ValueError("admin_transformer decoder layers need an encoder output")
        self._sublayer = 0
        return super().forward(x, encoder_out, *args, **kwargs)


def init_deepnet_weights(layer: nn.Module, beta: float) -> None:
    """DeepNet's initialisation: Xavier-normal with gain beta on the value,
    output and feed-forward projections, gain 1 on queries and keys."""
    attentions = [layer.self_attn]
    if getattr(layer, "encoder_attn", None) is not None:
        attentions.append(layer.encoder_attn)
    for attn in attentions:
        nn.init.xavier_normal_(attn.q_proj.weight, gain=1.0)
        nn.init.xavier_normal_(attn.k_proj.weight, gain=1.0)
        nn.init.xavier_normal_(attn.v_proj.weight, gain=beta)
        nn.init.xavier_normal_(attn.out_proj.weight, gain=beta)
    nn.init.xavier_normal_(layer.fc1.weight, gain=beta)
    nn.init.xavier_normal_(layer.fc2.weight, gain=beta)


def init_paper_params(layer: nn.Module) -> None:
    """The paper's initialisation of what fairseq 0.12 initialises otherwise
    (its fairseq 0.9, Transformer-Clinic's fork):

    * feed-forward ``fc1``/``fc2``: Xavier-uniform weights, zero biases (0.9's
      ``Linear``; fairseq >= 0.10 keeps torch's ``nn.Linear`` default, weight
      variance 1/(3 fan_in) and random biases);
    * attention q/k/v biases: zero (0.9's fused ``in_proj_bias``; 0.12 keeps
      torch's default).  The q/k/v weights need nothing: 0.9's Xavier-uniform
      over the fused (3d x d) matrix has the bound of 0.12's separate (d x d)
      ones with gain 1/sqrt(2).

    Everything else (embeddings, output projection, attention output, LayerNorm)
    is initialised alike by both versions.  Draws random numbers only for the
    feed-forward weights, after the model is built.
    """
    for fc in (layer.fc1, layer.fc2):
        nn.init.xavier_uniform_(fc.weight)
        nn.init.zeros_(fc.bias)
    for attn in (layer.self_attn, getattr(layer, "encoder_attn", None)):
        if attn is None:
            continue
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)
