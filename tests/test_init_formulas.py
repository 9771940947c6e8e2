"""admin-logn, deepnet and rezero set the values their papers define."""

from __future__ import annotations

import math

import pytest
import torch

from admin.common.variants import admin_logn_omega, deepnorm_constants
from tests.plugin_support import build, first_batch

LAYERS = 3  # tests.plugin_support.SMALL_MODEL: 3 encoder and 3 decoder layers
DIM, FFN = 64, 128


def test_admin_logn_omega_formula():
    # admin-torch: omega = sqrt((N+1) / ln(N+1) - 1), N = residual sublayers of the stack.
    assert admin_logn_omega(6) == pytest.approx(math.sqrt(7 / math.log(7) - 1))
    # N = 12: 13 / ln 13 = 5.0683, so omega = sqrt(4.0683) = 2.0170.
    assert admin_logn_omega(12) == pytest.approx(2.0170, abs=1e-4)
    with pytest.raises(ValueError):
        admin_logn_omega(0)


def test_admin_logn_model_omegas(tiny_databin):
    _, model = build(tiny_databin, "--init-type", "admin-logn")
    for stack, per_layer in ((model.encoder, 2), (model.decoder, 3)):
        n = LAYERS * per_layer
        expected = math.sqrt((n + 1) / math.log(n + 1) - 1)
        for layer in stack.layers:
            assert layer.omega.requires_grad
            assert layer.omega.shape == (per_layer, DIM)
            torch.testing.assert_close(layer.omega, torch.full_like(layer.omega, expected))


def test_deepnet_constants_and_init(tiny_databin):
    # DeepNet (Wang et al. 2022), encoder-decoder with N encoder, M decoder layers:
    # encoder alpha = 0.81 (N^4 M)^(1/16), beta = 0.87 (N^4 M)^(-1/16);
    # decoder alpha = (3M)^(1/4), beta = (12M)^(-1/4).
    n = m = LAYERS
    c = deepnorm_constants(n, m)
    assert c.encoder_alpha == pytest.approx(0.81 * (n**4 * m) ** (1 / 16))
    assert c.encoder_beta == pytest.approx(0.87 * (n**4 * m) ** (-1 / 16))
    assert c.decoder_alpha == pytest.approx((3 * m) ** 0.25)
    assert c.decoder_beta == pytest.approx((12 * m) ** -0.25)

    torch.manual_seed(0)
    _, model = build(tiny_databin, "--init-type", "deepnet")
    for stack, alpha, beta in (
        (model.encoder, c.encoder_alpha, c.encoder_beta),
        (model.decoder, c.decoder_alpha, c.decoder_beta),
    ):
        fc1 = torch.cat([layer.fc1.weight.flatten() for layer in stack.layers])
        v = torch.cat([layer.self_attn.v_proj.weight.flatten() for layer in stack.layers])
        q = torch.cat([layer.self_attn.q_proj.weight.flatten() for layer in stack.layers])
        for layer in stack.layers:
            assert not layer.omega.requires_grad  # alpha is a constant
            torch.testing.assert_close(layer.omega, torch.full_like(layer.omega, alpha))
        # Xavier-normal: std = gain * sqrt(2 / (fan_in + fan_out)).
        assert fc1.std().item() == pytest.approx(beta * math.sqrt(2 / (DIM + FFN)), rel=0.05)
        assert v.std().item() == pytest.approx(beta * math.sqrt(2 / (2 * DIM)), rel=0.05)
        assert q.std().item() == pytest.approx(math.sqrt(2 / (2 * DIM)), rel=0.05)


def test_rezero_starts_as_identity(tiny_databin):
    # ReZero (Bachlechner et al. 2020): x_{i+1} = x_i + alpha_i F(x_i), alpha_i = 0, no LayerNorm.
    task, model = build(tiny_databin, "--init-type", "rezero")
    for stack in (model.encoder, model.decoder):
        for layer in stack.layers:
            assert layer.rezero_alpha.tolist() == [0.0] * layer.n_sublayers
            assert not any(isinstance(m, torch.nn.LayerNorm) for m in layer.modules())
    batch = first_batch(task)
    model.eval()
    x = torch.randn(7, 2, DIM)
    layer = model.encoder.layers[0]
    with torch.no_grad():
        torch.testing.assert_close(layer(x, encoder_padding_mask=None), x)
        out, _ = model(**batch["net_input"])
    assert torch.isfinite(out).all()
