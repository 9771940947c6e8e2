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
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from admin.common.atomic import atomic_path
from admin.common.cli import run_cli
from admin.common.errors import AdminError
from admin.common.run_folder import COMPLETED, read_json
from admin.common.variants import VARIANTS

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


@torch.no_grad()  # the LayerNorm weights would otherwise keep every component alive
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
    return Decomposition(torch.tensor(rows, dtype=torch.float64), max_error)


@dataclass
class Summary:
    """Where the rows of a beta matrix put their weight.  Shares are of the squared norm
    (rows have unit norm, so a row's shares add up to 1), averaged over rows."""

    latest: float  # beta_{i,i}^2: the latest branch
    earlier: float  # the branches before the latest (the stack input excluded)
    input: float  # beta_{i,0}^2: the stack input
    dominance: float  # beta_{i,i} over the mean beta_{i,j} of the earlier branches (rows i >= 2)
    spread: float  # last row: participation ratio of its branch shares / number of branches


def summarize(beta: torch.Tensor) -> Summary:
    """How much each sublayer output relies on its latest branch versus earlier ones.

    ``spread`` is 1 when the last row weighs every branch equally and 1/n when one
    branch carries it all; ``dominance`` is about 1 when the latest branch weighs as
    much as an average earlier one.
    """
    beta = beta.double()
    shares = beta.pow(2)
    n = shares.size(0)
    latest = torch.stack([shares[i, i + 1] for i in range(n)])
    inputs = shares[:, 0]
    ratios = [beta[i, i + 1] / beta[i, 1 : i + 1].mean() for i in range(1, n)]
    top = shares[-1, 1:]
    return Summary(
        latest=latest.mean().item(),
        earlier=(1.0 - latest - inputs).mean().item(),
        input=inputs.mean().item(),
        dominance=torch.stack(ratios).mean().item() if ratios else float("nan"),
        spread=(top.sum() ** 2 / top.pow(2).sum() / top.numel()).item(),
    )


STATES = ("init", "trained")


def write_csv(path: Path, betas: dict[tuple[str, str], torch.Tensor]) -> None:
    """Long format: state (init/trained), stack, sublayer i (1-based), branch j
    (0 = the stack input), beta."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["state", "stack", "sublayer", "branch", "beta"])
        for (state, stack), beta in betas.items():
            for i, row in enumerate(beta.tolist(), start=1):
                for j in range(i + 1):
                    writer.writerow([state, stack, i, j, f"{row[j]:.6f}"])


def read_csv(path: Path) -> dict[tuple[str, str], torch.Tensor]:
    cells: dict[tuple[str, str], dict[tuple[int, int], float]] = {}
    with open(path, newline="") as handle:
        for r in csv.DictReader(handle):
            key = (r["state"], r["stack"])
            cells.setdefault(key, {})[int(r["sublayer"]), int(r["branch"])] = float(r["beta"])
    out = {}
    for key, values in cells.items():
        n = max(i for i, _ in values)
        beta = torch.zeros(n, n + 1, dtype=torch.float64)
        for (i, j), v in values.items():
            beta[i - 1, j] = v
        out[key] = beta
    return out


def plot(
    path: Path, betas: dict[tuple[str, str], torch.Tensor], title: str, notes: dict[str, str]
) -> None:
    """One heatmap per state (rows) and stack (columns), beta_{i,j} masked above the
    diagonal; a state without a matrix shows its note instead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from admin.plots import save_png

    states = [s for s in STATES if any(k[0] == s for k in betas) or s in notes]
    fig, axes = plt.subplots(
        len(states), 2, figsize=(11, 4.5 * len(states)), squeeze=False, layout="constrained"
    )
    image = None
    for r, state in enumerate(states):
        for c, stack in enumerate(("encoder", "decoder")):
            ax = axes[r][c]
            beta = betas.get((state, stack))
            if beta is None:
                ax.axis("off")
                ax.text(0.5, 0.5, notes.get(state, "not measured"), ha="center", va="center",
                        wrap=True, transform=ax.transAxes)  # fmt: skip
                continue
            data = beta.numpy().copy()
            data[np.triu_indices(data.shape[0], k=2, m=data.shape[1])] = np.nan
            image = ax.imshow(data, cmap="RdBu_r", vmin=0, vmax=1, aspect="auto")
            s = summarize(beta)
            ax.set_title(
                f"{stack}, {state}\nshares: latest {s.latest:.2f}, earlier {s.earlier:.2f}, "
                f"input {s.input:.2f}; dominance {s.dominance:.2f}; spread {s.spread:.2f}",
                fontsize=8.5,
            )
            ax.set_xlabel("residual branch j (0 = stack input)")
            ax.set_ylabel("output of sublayer i")
            n = data.shape[0]
            ticks = list(range(0, n + 1, max(1, (n + 1) // 12)))
            ax.set_xticks(ticks)
            ax.set_yticks([t for t in ticks if t < n], [str(t + 1) for t in ticks if t < n])
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.03, label="β(i, j)")
    fig.suptitle(
        title + "\nshares of squared weight (mean over rows); dominance: latest β over the "
        "mean earlier branch β; spread: last row's participation ratio / branches",
        fontsize=9,
    )
    save_png(fig, path)


def _trained_checkpoint(average_json: Path) -> tuple[Path | None, str]:
    """The averaged checkpoint a run's ``average.json`` names, or why there is none."""
    info = read_json(average_json, "averaging result")
    if info.get("status") != COMPLETED or not info.get("checkpoint"):
        return None, f"trained run {info.get('status', 'unknown')}: no trained model"
    checkpoint = average_json.parent / info["checkpoint"]
    if not checkpoint.is_file():
        raise AdminError(f"{average_json} names {checkpoint}, which does not exist")
    epochs = info.get("epochs") or []
    return checkpoint, f"trained (epochs {', '.join(map(str, epochs))} averaged)"


def main(argv: Sequence[str] | None = None) -> int:
    from admin.analysis.models import Builder, load_trained
    from admin.common.fairseq_command import parse_depth, parse_hparams

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-bin", type=Path, required=True)
    parser.add_argument("--split", default="valid", help="the split the fixed batch comes from")
    parser.add_argument("--max-tokens", type=int, default=2000, help="size of the fixed batch")
    parser.add_argument("--variant", required=True, choices=list(VARIANTS))
    parser.add_argument("--depth", required=True, help="<encoder>-<decoder> layers, e.g. 6-6")
    parser.add_argument(
        "--hparams", required=True, help="the recipe's fairseq options (JSON), as for training"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the initialisation")
    parser.add_argument("--profile", type=Path, help="Admin: the profile to start from")
    parser.add_argument(
        "--average", type=Path, help="a trained run's average.json: also its averaged model"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out-png", type=Path, required=True)
    parser.add_argument("--out-csv", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq logs at DEBUG
    depth = parse_depth(args.depth)
    hparams = parse_hparams(args.hparams)
    torch.set_num_threads(args.threads)
    builder = Builder(args.data_bin, split=args.split, max_tokens=args.max_tokens)
    models = {"init": builder.build(args.variant, depth, hparams, args.seed, args.profile)}
    notes = {}
    if args.average is not None:
        checkpoint, notes["trained"] = _trained_checkpoint(args.average)
        if checkpoint is not None:
            models["trained"] = load_trained(checkpoint, builder.task)
    betas: dict[tuple[str, str], torch.Tensor] = {}
    for state, model in models.items():
        model = model.double()
        for stack in ("encoder", "decoder"):
            result = decompose(model, builder.batch, stack)
            if result.max_error > 1e-6:
                raise AdminError(f"{state} {stack} decomposition is off by {result.max_error:.2e}")
            betas[state, stack] = result.beta
            s = summarize(result.beta)
            print(
                f"{args.variant} {args.depth} {state} {stack}: shares latest {s.latest:.3f}, "
                f"earlier {s.earlier:.3f}, input {s.input:.3f}; dominance {s.dominance:.2f}, "
                f"spread {s.spread:.2f}"
            )
    notes.setdefault("init", "")
    write_csv(args.out_csv, betas)
    when = "at initialisation" + (f" and {notes['trained']}" if "trained" in notes else "")
    plot(args.out_png, betas, f"{args.variant}, {args.depth} layers, {when}", notes)
    return 0


if __name__ == "__main__":
    run_cli(main)
