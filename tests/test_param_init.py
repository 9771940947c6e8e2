"""``--param-init paper`` starts every tensor where the paper's fairseq 0.9 started it.

The rules are those of Transformer-Clinic's fork of fairseq 0.9 (the paper's code):

* ``Embedding``: N(0, d^-1/2), padding row 0; the untied output projection likewise;
* ``MultiheadAttention``: one fused (3d x d) ``in_proj_weight``, Xavier-uniform, and a
  zero ``in_proj_bias``; ``out_proj`` Xavier-uniform with a zero bias;
* ``Linear`` (fc1, fc2): Xavier-uniform weight, zero bias;
* LayerNorm: weight 1, bias 0; Admin's omegas, ReZero's alphas: their variant's values.

Every parameter of the model must match one rule, so that nothing differs unnoticed.
"""

from __future__ import annotations

import math

import pytest
import torch

from admin.common.variants import admin_logn_omega
from tests.plugin_support import build

D, FFN, LAYERS = 128, 256, 2  # wide enough for tight statistics of every single tensor
MODEL = [
    "--encoder-layers", str(LAYERS), "--decoder-layers", str(LAYERS),
    "--encoder-embed-dim", str(D), "--decoder-embed-dim", str(D),
    "--encoder-ffn-embed-dim", str(FFN), "--decoder-ffn-embed-dim", str(FFN),
    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
]  # fmt: skip
VARIANTS = {
    "postln": ["--init-type", "default"],
    "preln": ["--init-type", "default", "--encoder-normalize-before", "--decoder-normalize-before"],
    "admin-logn": ["--init-type", "admin-logn"],
    "rezero": ["--init-type", "rezero"],
}


def xavier_bound(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    return gain * math.sqrt(6.0 / (fan_in + fan_out))


def assert_zero(name: str, t: torch.Tensor) -> None:
    assert bool((t == 0).all()), f"{name} is not all zero"


def assert_constant(name: str, t: torch.Tensor, value: float) -> None:
    torch.testing.assert_close(t, torch.full_like(t, value), msg=f"{name} != {value}")


def assert_uniform(name: str, t: torch.Tensor, bound: float) -> None:
    """U(-bound, bound): inside the bound, filling it, variance bound^2/3, mean 0.

    Tolerances are 5 sigma or more of each statistic for n samples: the sample variance
    of a uniform has relative sd sqrt(0.8/n); P(max |x| < (1 - 20/n) bound) = e^-20.
    """
    x = t.detach().double().flatten()
    n = x.numel()
    assert x.abs().max().item() <= bound * (1 + 1e-6), f"{name} exceeds its bound {bound}"
    assert x.abs().max().item() >= (1 - 20 / n) * bound, f"{name} does not fill U(+-{bound})"
    rel = max(0.05, 5 * math.sqrt(0.8 / n))
    assert x.var().item() == pytest.approx(bound**2 / 3, rel=rel), name
    assert abs(x.mean().item()) < 5 * bound / math.sqrt(3 * n), name


def assert_normal(name: str, t: torch.Tensor, std: float) -> None:
    """N(0, std): its standard deviation, mean 0, and a normal's 4.55 % beyond 2 std
    (a uniform of that variance has none)."""
    x = t.detach().double().flatten()
    n = x.numel()
    assert x.std().item() == pytest.approx(std, rel=0.05), name
    assert abs(x.mean().item()) < 5 * std / math.sqrt(n), name
    tail = (x.abs() > 2 * std).double().mean().item()
    assert tail == pytest.approx(0.0455, abs=0.01), f"{name}: {tail:.4f} beyond 2 std"


def check_paper_rules(model: torch.nn.Module, variant: str, pad: int) -> set[str]:
    """Check every parameter against fairseq 0.9's rule; return the rules used."""
    used = set()
    for name, t in model.named_parameters():
        *path, leaf = name.split(".")
        owner = path[-1] if path else ""
        if owner == "embed_tokens" or owner == "output_projection":
            rule = "embedding N(0, d^-1/2), padding row 0"
            assert_normal(name, torch.cat([t[:pad], t[pad + 1 :]]), D**-0.5)
            if owner == "embed_tokens":
                assert_zero(f"{name}[pad]", t[pad])
        elif owner in ("q_proj", "k_proj", "v_proj") and leaf == "weight":
            rule = "q/k/v: slice of a fused (3d x d) Xavier-uniform"
            assert_uniform(name, t, xavier_bound(D, 3 * D))
        elif owner in ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2") and leaf == "bias":
            rule = "Linear / attention bias 0"
            assert_zero(name, t)
        elif owner == "out_proj":
            rule = "attention out_proj Xavier-uniform"
            assert_uniform(name, t, xavier_bound(D, D))
        elif owner in ("fc1", "fc2"):
            rule = "feed-forward Xavier-uniform"
            assert_uniform(name, t, xavier_bound(D, FFN))
        elif owner.endswith("layer_norm"):
            rule = f"LayerNorm {leaf}"
            assert_constant(name, t, 1.0 if leaf == "weight" else 0.0)
        elif leaf == "omega" and variant == "admin-logn":
            rule = "admin-logn omega"
            per_layer = 2 if name.startswith("encoder.") else 3
            assert_constant(name, t, admin_logn_omega(per_layer * LAYERS))
        elif leaf == "rezero_alpha":
            rule = "ReZero alpha 0"
            assert_zero(name, t)
        else:
            raise AssertionError(f"{name} {tuple(t.shape)}: no fairseq 0.9 rule checks it")
        used.add(rule)
    return used


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("seed", [1, 2])
def test_paper_init_follows_fairseq_09(tiny_databin, variant: str, seed: int) -> None:
    extra = [*VARIANTS[variant], "--param-init", "paper"]
    task, model = build(tiny_databin, *extra, model=MODEL, seed=seed)
    used = check_paper_rules(model, variant, task.target_dictionary.pad())
    expected = {
        "embedding N(0, d^-1/2), padding row 0",
        "q/k/v: slice of a fused (3d x d) Xavier-uniform",
        "Linear / attention bias 0",
        "attention out_proj Xavier-uniform",
        "feed-forward Xavier-uniform",
    }
    expected |= (
        {"ReZero alpha 0"} if variant == "rezero" else {"LayerNorm weight", "LayerNorm bias"}
    )
    expected |= {"admin-logn omega"} if variant == "admin-logn" else set()
    assert used == expected
    if variant == "preln":  # the stacks' final LayerNorms were checked too
        assert model.encoder.layer_norm is not None and model.decoder.layer_norm is not None


def test_untied_embeddings_and_output_projection(tiny_databin) -> None:
    # Without --share-all-embeddings: three matrices, each N(0, d^-1/2) in 0.9 and 0.12.
    task, model = build(tiny_databin, "--param-init", "paper", model=MODEL)
    names = {n for n, _ in model.named_parameters() if "embed_tokens" in n or "output_proj" in n}
    assert names == {
        "encoder.embed_tokens.weight",
        "decoder.embed_tokens.weight",
        "decoder.output_projection.weight",
    }
    check_paper_rules(model, "postln", task.target_dictionary.pad())


def test_fused_and_separate_qkv_xavier_agree() -> None:
    # 0.9: xavier_uniform_ over the fused (3d x d) in_proj_weight; 0.12: over each (d x d)
    # projection with gain 1/sqrt(2).  Both bounds are sqrt(3 / (2d)), measured here.
    torch.manual_seed(0)
    fused = torch.nn.init.xavier_uniform_(torch.empty(3 * D, D))
    separate = torch.cat(
        [torch.nn.init.xavier_uniform_(torch.empty(D, D), gain=2**-0.5) for _ in range(3)]
    )
    bound = math.sqrt(3 / (2 * D))
    for t in (fused, separate):
        assert_uniform("q/k/v", t, bound)
    assert fused.abs().max().item() == pytest.approx(separate.abs().max().item(), rel=1e-3)
    assert fused.var().item() == pytest.approx(separate.var().item(), rel=0.03)


def test_fairseq_init_differs_only_where_the_paper_did(tiny_databin) -> None:
    _, stock = build(tiny_databin, "--init-type", "default", model=MODEL)
    _, paper = build(tiny_databin, "--init-type", "default", "--param-init", "paper", model=MODEL)
    layers = (*stock.encoder.layers, *stock.decoder.layers)
    attns = [m for layer in layers for m in (layer.self_attn, getattr(layer, "encoder_attn", None))]
    qkv_bias = torch.cat(
        [p.bias for a in attns if a is not None for p in (a.q_proj, a.k_proj, a.v_proj)]
    )
    # fairseq 0.12 keeps torch's nn.Linear default: U(+-1/sqrt(fan_in)), weights and biases.
    assert_uniform("0.12 q/k/v biases", qkv_bias, 1 / math.sqrt(D))
    for name, fan_in in (("fc1", D), ("fc2", FFN)):
        bias = torch.cat([getattr(layer, name).bias for layer in layers])
        assert_uniform(f"0.12 {name}.bias", bias, 1 / math.sqrt(fan_in))
        for layer in layers:
            assert_uniform(
                f"0.12 {name}.weight", getattr(layer, name).weight, 1 / math.sqrt(fan_in)
            )
    # Same seed: every other tensor is the same number for number.
    changed = (".fc1.", ".fc2.", ".q_proj.bias", ".k_proj.bias", ".v_proj.bias")
    stock_sd, paper_sd = stock.state_dict(), paper.state_dict()
    assert stock_sd.keys() == paper_sd.keys()
    same = [k for k in stock_sd if not any(c in k for c in changed)]
    assert len(same) > 20
    for key in same:
        torch.testing.assert_close(stock_sd[key], paper_sd[key], rtol=0, atol=0)
    for key in set(stock_sd) - set(same):
        assert not torch.equal(stock_sd[key], paper_sd[key]), key


def test_param_init_leaves_deepnet_alone(tiny_databin) -> None:
    _, stock = build(tiny_databin, "--init-type", "deepnet", model=MODEL)
    _, paper = build(tiny_databin, "--init-type", "deepnet", "--param-init", "paper", model=MODEL)
    for a, b in zip(stock.state_dict().values(), paper.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_unknown_param_init_is_refused(tiny_databin) -> None:
    with pytest.raises(SystemExit):
        build(tiny_databin, "--param-init", "xavier", model=MODEL)


def test_fairseq_init_breaks_the_paper_rules(tiny_databin) -> None:
    # The check has teeth: fairseq 0.12's own initialisation fails it at a q/k/v bias.
    task, model = build(tiny_databin, "--init-type", "default", model=MODEL)
    with pytest.raises(AssertionError, match=r"attn\.[qkv]_proj\.bias is not all zero"):
        check_paper_rules(model, "postln", task.target_dictionary.pad())
