"""Admin's profiling: the running-variance recurrence and the profile file.

Post-LN sublayer ``i`` computes ``x_{i+1} = LN(x_i * omega_i + f_i(x_i))``.
Profiling runs one training-mode forward pass on one batch.  Each stack
(encoder, decoder) keeps a running value ``r`` that starts at 1.0; before
sublayer ``i`` it sets ``omega_i = r``, and after it updates
``r = sqrt(Var(x_i * omega_i) + Var(f_i(x_i)))`` with ``Var`` taken over all
elements and ``f_i(x_i)`` after dropout.  The omegas, in sublayer order, form
the profile that ``--init-type adaptive`` initialises from.

The profile file is self-describing JSON (depth and width of each stack), so a
profile that does not fit the model is caught before training starts.  This
module does not import fairseq.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from admin.common.atomic import atomic_write_text
from admin.common.errors import AdminError

FORMAT = "admin-profile"
VERSION = 1
# Residual sublayers per layer: encoder = self-attn, ffn; decoder = self-attn, cross-attn, ffn.
SUBLAYERS = {"encoder": 2, "decoder": 3}


class ProfileError(AdminError):
    """A missing, corrupt or mismatched Admin profile."""


@dataclass
class StackProfile:
    layers: int
    embed_dim: int
    omegas: list[float]


@dataclass
class Profile:
    encoder: StackProfile
    decoder: StackProfile
    meta: dict = field(default_factory=dict)

    def stack(self, name: str) -> StackProfile:
        return self.encoder if name == "encoder" else self.decoder


class RunningVariance:
    """The running value ``r`` of one stack during profiling."""

    def __init__(self) -> None:
        self.value = 1.0
        self.omegas: list[float] = []

    def step(self, residual: torch.Tensor, omega: torch.Tensor, branch: torch.Tensor) -> None:
        """Record ``omega_i = r`` and advance ``r`` past sublayer ``i``.

        ``omega`` must already hold ``r``.  Variances are computed in float64 so
        that the recurrence does not depend on the training precision.
        """
        self.omegas.append(self.value)
        scaled = (residual.detach() * omega.detach()).double()
        var_in = scaled.var(unbiased=False).item()
        var_out = branch.detach().double().var(unbiased=False).item()
        self.value = math.sqrt(var_in + var_out)


def to_json(profile: Profile) -> str:
    doc = {
        "format": FORMAT,
        "version": VERSION,
        **{
            name: {
                "layers": stack.layers,
                "embed_dim": stack.embed_dim,
                "omegas": stack.omegas,
            }
            for name, stack in (("encoder", profile.encoder), ("decoder", profile.decoder))
        },
        "meta": profile.meta,
    }
    return json.dumps(doc, indent=2) + "\n"


def write_profile(path: str | os.PathLike[str], profile: Profile) -> None:
    """Write atomically: concurrent readers see the old file or the whole new one."""
    for name in ("encoder", "decoder"):
        _check_stack(path, name, profile.stack(name))
    atomic_write_text(path, to_json(profile))


def read_profile(path: str | os.PathLike[str]) -> Profile:
    path = Path(path)
    if not path.is_file():
        raise ProfileError(
            f"Admin profile {path} does not exist: run the profiling job "
            "(--init-type adaptive-profiling --admin-profile PATH) first"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ProfileError(f"Admin profile {path} is corrupt (not valid JSON: {err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ProfileError(f"Admin profile {path} is corrupt: 'format' is not {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise ProfileError(
            f"Admin profile {path} has version {doc.get('version')!r}; this code reads {VERSION}"
        )
    stacks = {}
    for name in ("encoder", "decoder"):
        raw = doc.get(name)
        try:
            stack = StackProfile(
                layers=int(raw["layers"]),
                embed_dim=int(raw["embed_dim"]),
                omegas=[float(v) for v in raw["omegas"]],
            )
        except (TypeError, KeyError, ValueError):
            raise ProfileError(
                f"Admin profile {path} is corrupt: '{name}' needs layers, embed_dim and omegas"
            ) from None
        _check_stack(path, name, stack)
        stacks[name] = stack
    return Profile(stacks["encoder"], stacks["decoder"], doc.get("meta") or {})


def check_fits(path: str | os.PathLike[str], profile: Profile, **expected: int) -> None:
    """Fail unless the profile was made for this model.

    ``expected`` holds ``encoder_layers``, ``encoder_embed_dim``,
    ``decoder_layers`` and ``decoder_embed_dim``.
    """
    mismatches = []
    for name in ("encoder", "decoder"):
        stack = profile.stack(name)
        for attr, have in (("layers", stack.layers), ("embed_dim", stack.embed_dim)):
            want = expected[f"{name}_{attr}"]
            if have != want:
                mismatches.append(f"{name} {attr}: profile has {have}, model has {want}")
    if mismatches:
        raise ProfileError(
            f"Admin profile {path} does not fit the model ({'; '.join(mismatches)}); "
            "profile again with this model's depth and width"
        )


def _check_stack(path: str | os.PathLike[str], name: str, stack: StackProfile) -> None:
    want = stack.layers * SUBLAYERS[name]
    if stack.layers < 1 or stack.embed_dim < 1:
        raise ProfileError(f"Admin profile {path}: {name} layers and embed_dim must be >= 1")
    if len(stack.omegas) != want:
        raise ProfileError(
            f"Admin profile {path} is corrupt: {name} has {len(stack.omegas)} omegas, "
            f"expected {want} ({stack.layers} layers x {SUBLAYERS[name]} sublayers)"
        )
    bad = [v for v in stack.omegas if not math.isfinite(v) or v <= 0]
    if bad:
        raise ProfileError(
            f"Admin profile {path} is corrupt: {name} omegas must be finite and > 0, got {bad[0]}"
        )
