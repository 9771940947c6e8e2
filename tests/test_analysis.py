"""The analysis tools: exact residual decomposition, perturbation, fits."""

from __future__ import annotations

import math

import pytest
import torch

from admin.analysis.dependency import decompose
from admin.analysis.models import Builder
from admin.analysis.output_change import fit_line, output_change, perturbed_names


@pytest.fixture(scope="module")
def builder(tiny_databin):
    return Builder(tiny_databin)


@pytest.mark.parametrize("variant", ["postln", "preln", "admin", "admin-logn", "deepnet", "rezero"])
def test_decomposition_is_exact(builder, variant):
    model = builder.build(variant, 3, 32, seed=1).double()
    for stack, sublayers in (("encoder", 6), ("decoder", 9)):
        result = decompose(model, builder.batch, stack)
        # The components add up to the real residual stream after every layer.
        assert result.max_error < 1e-9
        beta = result.beta
        assert beta.shape == (sublayers, sublayers + 1)
        torch.testing.assert_close(beta.norm(dim=1), torch.ones(sublayers, dtype=beta.dtype))
        # Row i only has the input and branches 1..i.
        assert torch.count_nonzero(torch.triu(beta, diagonal=2)) == 0


def test_rezero_at_init_depends_on_the_input_only(builder):
    model = builder.build("rezero", 3, 32, seed=1).double()
    beta = decompose(model, builder.batch, "encoder").beta
    assert beta[:, 0].tolist() == pytest.approx([1.0] * 6)


def test_perturbation_skips_biases_norms_and_scales(builder):
    model = builder.build("admin", 2, 32, seed=1)
    names = perturbed_names(model)
    assert names and not [n for n in names if "bias" in n or "layer_norm" in n or "omega" in n]
    assert "encoder.layers.0.fc1.weight" in names


def test_output_change_is_zero_without_perturbation(builder):
    model = builder.build("postln", 2, 32, seed=1).double()
    before = {n: p.clone() for n, p in model.named_parameters()}
    assert output_change(model, builder.batch, draws=2, scale=0.0, seed=1) == (0.0, 0.0)
    enc, dec = output_change(model, builder.batch, draws=2, scale=1e-4, seed=1)
    assert enc > 0 and dec > 0
    # The weights are restored after each draw.
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name])


def test_fit_line_recovers_slope_and_r2():
    xs = [6, 12, 18, 24]
    fit = fit_line(xs, [2.0 + 0.5 * x for x in xs])
    assert fit.slope == pytest.approx(0.5) and fit.intercept == pytest.approx(2.0)
    assert fit.r2 == pytest.approx(1.0)
    log_fit = fit_line([math.log(x) for x in xs], [3 * math.log(x) for x in xs])
    assert log_fit.slope == pytest.approx(3.0)
