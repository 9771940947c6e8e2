"""Layer dependency: how much each layer's output relies on each residual branch
(the paper's Figure 1, beta_{i,j}).

The residual stream after sublayer ``i`` is a sum of components: the stack's
input ``x_0`` and every branch output ``f_j`` (j <= i), each rescaled by the
residual scales (omega, ReZero's alpha) and by every LayerNorm since.  A
LayerNorm acts per token as ``gamma * (y - mean(y)) / std(y) + b``, which is
linear in the components once its statistics are fixed, so the decomposition
is exact: the components (plus the accumulated LayerNorm biases) add up to the
stream itself, which :func:`decompose` checks.

``beta_{i,j} = rms(c_{i,j}) / sqrt(sum_k rms(c_{i,k})^2)`` over the input and
branch components of the stream after sublayer ``i``, measured on the real
(non-padding) tokens of a fixed batch.  Each row has unit norm; Post-LN puts
its weight on the diagonal (the latest branch), Pre-LN spreads it.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from admin.atomic import atomic_path
from admin.cli import run_cli
from admin.errors import AdminError

POST_LN_NORMS = {
    "encoder": ("self_attn_layer_norm", "final_layer_norm"),
    "decoder": ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"),
}


@dataclass
class Decomposition:
    beta: torch.Tensor  # (sublayers, sublayers + 1): row i = after sublayer i+1
    max_error: float  # max |sum of components - actual stream| over the stack


class _Recorder:
    """Forward hooks that keep, per layer, the stack input, the branch outputs
    (the dropout module's outputs, one per sublayer) and the inputs of the
    post-sublayer LayerNorms."""

    def __init__(self, stack: torch.nn.Module, norms: Sequence[str]):
        self.layer_inputs: list[torch.Tensor] = []
        self.layer_outputs: list[torch.Tensor] = []
        self.branches: list[list[torch.Tensor]] = [[] for _ in stack.layers]
        self.norm_inputs: list[dict[str, torch.Tensor]] = [{} for _ in stack.layers]
        self.handles = []
        for index, layer in enumerate(stack.layers):
            self.handles.append(layer.register_forward_pre_hook(self._keep_input))
            self.handles.append(layer.register_forward_hook(self._keep_output))
            self.handles.append(
                layer.dropout_module.register_forward_hook(
                    lambda _m, _i, out, index=index: self.branches[index].append(out.detach())
                )
            )
            for name in norms:
                module = getattr(layer, name)
                self.handles.append(
                    module.register_forward_hook(
                        lambda _m, inp, _o, index=index, name=name: self.norm_inputs[index].update(
                            {name: inp[0].detach()}
                        )
                    )
                )

    def _keep_input(self, _module, args, kwargs=None):
        self.layer_inputs.append(args[0].detach())

    def _keep_output(self, _module, _args, out):
        self.layer_outputs.append((out[0] if isinstance(out, tuple) else out).detach())

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _rms(t: torch.Tensor, mask: torch.Tensor) -> float:
    return t[mask].pow(2).mean().sqrt().item()


def _layer_norm(
    components: list[torch.Tensor], bias: torch.Tensor, norm: torch.nn.LayerNorm, y: torch.Tensor
):
    """Apply LayerNorm ``norm`` (whose input was ``y``) to each component."""
    std = (y.var(-1, unbiased=False, keepdim=True) + norm.eps).sqrt()
    gamma = norm.weight if norm.weight is not None else 1.0
    scaled = [gamma * (c - c.mean(-1, keepdim=True)) / std for c in components]
    new_bias = gamma * (bias - bias.mean(-1, keepdim=True)) / std
    if norm.bias is not None:
        new_bias = new_bias + norm.bias
    return scaled, new_bias


def decompose(model: torch.nn.Module, batch: dict, stack_name: str = "encoder") -> Decomposition:
    """beta_{i,j} for one stack of ``model`` (eval mode) on ``batch``."""
    model.eval()
    stack = getattr(model, stack_name)
    first = stack.layers[0]
    pre_ln = bool(first.normalize_before)
    init_type = getattr(first, "init_type", "default")
    norms = () if pre_ln or init_type == "rezero" else POST_LN_NORMS[stack_name]
    recorder = _Recorder(stack, norms)
    net = batch["net_input"]
    try:
        with torch.no_grad():
            enc = model.encoder(net["src_tokens"], src_lengths=net["src_lengths"])
            if stack_name == "decoder":
                model.decoder(net["prev_output_tokens"], encoder_out=enc, features_only=True)
    finally:
        recorder.remove()
    if stack_name == "encoder":
        mask = ~net["src_tokens"].eq(stack.padding_idx).t()  # (T, B), like the stream
    else:
        mask = ~net["prev_output_tokens"].eq(stack.padding_idx).t()

    x0 = recorder.layer_inputs[0]
    components = [x0]
    bias = torch.zeros_like(x0)
    rows, max_error = [], 0.0
    n_sub = len(norms) if norms else (3 if stack_name == "decoder" else 2)
    total = n_sub * len(stack.layers)
    for index, layer in enumerate(stack.layers):
        for k in range(n_sub):
            branch = recorder.branches[index][k]
            if init_type == "rezero":
                components = components + [layer.rezero_alpha[k] * branch]
            elif hasattr(layer, "omega"):
                omega = layer.omega[k]
                components = [c * omega for c in components] + [branch]
                bias = bias * omega
            else:
                components = components + [branch]
            if norms:
                norm = getattr(layer, norms[k])
                components, bias = _layer_norm(
                    components, bias, norm, recorder.norm_inputs[index][norms[k]]
                )
            rms = [_rms(c, mask) for c in components]
            norm_all = sum(r * r for r in rms) ** 0.5 or 1.0
            rows.append([r / norm_all for r in rms] + [0.0] * (total + 1 - len(rms)))
        stream = sum(components) + bias
        error = (stream - recorder.layer_outputs[index])[mask].abs().max().item()
        max_error = max(max_error, error)
    return Decomposition(torch.tensor(rows), max_error)


def write_csv(path: Path, beta: torch.Tensor) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sublayer"] + [f"branch_{j}" for j in range(beta.size(1))])
        for i, row in enumerate(beta.tolist(), start=1):
            writer.writerow([i] + [f"{v:.6f}" for v in row])


def plot(path: Path, betas: dict[str, torch.Tensor], title: str) -> None:
    import matplotlib.pyplot as plt

    from admin.plots import save_png

    fig, axes = plt.subplots(1, len(betas), figsize=(5.2 * len(betas), 4.4), squeeze=False)
    for ax, (stack, beta) in zip(axes[0], betas.items(), strict=True):
        image = ax.imshow(beta.numpy(), cmap="viridis", vmin=0, vmax=1, origin="upper")
        ax.set_xlabel("residual branch j (0 = stack input)")
        ax.set_ylabel("output of sublayer i")
        ax.set_title(f"{stack}: β(i, j)")
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    from admin.analysis.models import Builder, load_trained

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-bin", type=Path, required=True)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--layers", type=int, required=True, help="encoder = decoder depth")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--checkpoint", type=Path, help="a trained model instead of the init")
    parser.add_argument("--out-png", type=Path, required=True)
    parser.add_argument("--out-csv", type=Path, required=True, help="encoder; decoder beside it")
    args = parser.parse_args(argv)
    builder = Builder(args.data_bin)
    if args.checkpoint:
        model = load_trained(args.checkpoint, builder.task)
        when = f"trained ({args.checkpoint.name})"
    else:
        model = builder.build(args.variant, args.layers, args.dim, args.seed)
        when = "initialisation"
    betas = {}
    for stack in ("encoder", "decoder"):
        result = decompose(model.double(), builder.batch, stack)
        if result.max_error > 1e-6:
            raise AdminError(f"{stack} decomposition is off by {result.max_error:.2e}")
        betas[stack] = result.beta
    write_csv(args.out_csv, betas["encoder"])
    write_csv(args.out_csv.with_name(args.out_csv.stem + "_decoder.csv"), betas["decoder"])
    plot(args.out_png, betas, f"{args.variant}, {args.layers} layers, at {when}")
    return 0


if __name__ == "__main__":
    run_cli(main)
