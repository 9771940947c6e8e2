"""With --init-type default, admin_transformer is fairseq's transformer; the
omega variants differ from Post-LN only by the scale on the residual."""

from __future__ import annotations

import pytest
import torch

from tests.plugin_support import build, first_batch


def _outputs(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        logits, _ = model(**batch["net_input"])
    return logits


@pytest.mark.parametrize("pre_ln", [False, True], ids=["post-ln", "pre-ln"])
def test_default_matches_fairseq_transformer(tiny_databin, pre_ln):
    flags = ["--encoder-normalize-before", "--decoder-normalize-before"] if pre_ln else []
    task, ours = build(tiny_databin, "--init-type", "default", *flags, seed=1)
    _, theirs = build(tiny_databin, *flags, arch="transformer", seed=2)
    # Same parameter names and shapes: a strict load must succeed.
    ours.load_state_dict(theirs.state_dict(), strict=True)
    batch = first_batch(task)
    assert batch["net_input"]["src_tokens"].size(0) > 1
    out_ours, out_theirs = _outputs(ours, batch), _outputs(theirs, batch)
    assert out_ours.shape == out_theirs.shape
    torch.testing.assert_close(out_ours, out_theirs, rtol=0, atol=0)


@pytest.mark.parametrize("init_type", ["admin-logn", "deepnet"])
def test_omega_variant_with_unit_omegas_is_post_ln(tiny_databin, init_type):
    """x*omega + f(x) with omega = 1 is exactly Post-LN's x + f(x)."""
    task, variant = build(tiny_databin, "--init-type", init_type, seed=1)
    _, post_ln = build(tiny_databin, "--init-type", "default", seed=2)
    state = post_ln.state_dict()
    omega_keys = [k for k in variant.state_dict() if k.endswith(".omega")]
    assert len(omega_keys) == 3 + 3  # one (sublayers x dim) tensor per layer
    for key in omega_keys:
        state[key] = torch.ones_like(variant.state_dict()[key])
    variant.load_state_dict(state, strict=True)
    batch = first_batch(task)
    torch.testing.assert_close(_outputs(variant, batch), _outputs(post_ln, batch))
    # ... and with the variant's own omegas it is not.
    _, fresh = build(tiny_databin, "--init-type", init_type, seed=1)
    fresh_state = fresh.state_dict()
    state.update({k: fresh_state[k] for k in omega_keys})
    variant.load_state_dict(state, strict=True)
    assert not torch.allclose(_outputs(variant, batch), _outputs(post_ln, batch))
