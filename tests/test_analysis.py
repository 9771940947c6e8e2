"""The analysis tools: exact residual decomposition, perturbation, fits."""

from __future__ import annotations

import math

import pytest
import torch

from admin.analysis.dependency import decompose, read_csv, summarize, write_csv
from admin.analysis.models import Builder, small_hparams
from admin.analysis.output_change import fit_line, output_change, perturbed_names
from tests import steps_support

HP = small_hparams(32, 64, 4)


@pytest.fixture(scope="module")
def builder(tiny_databin):
    return Builder(tiny_databin)


@pytest.mark.parametrize("variant", ["postln", "preln", "admin", "admin-logn", "deepnet", "rezero"])
def test_decomposition_is_exact(builder, variant):
    model = builder.build(variant, (3, 3), HP, seed=1).double()
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
    model = builder.build("rezero", (3, 3), HP, seed=1).double()
    beta = decompose(model, builder.batch, "encoder").beta
    assert beta[:, 0].tolist() == pytest.approx([1.0] * 6)


def test_perturbation_skips_biases_norms_and_scales(builder):
    model = builder.build("admin", (2, 2), HP, seed=1)
    names = perturbed_names(model)
    assert names and not [n for n in names if "bias" in n or "layer_norm" in n or "omega" in n]
    assert "encoder.layers.0.fc1.weight" in names


def test_output_change_is_zero_without_perturbation(builder):
    model = builder.build("postln", (2, 2), HP, seed=1).double()
    before = {n: p.clone() for n, p in model.named_parameters()}
    zero = output_change(model, builder.batch, draws=2, scale=0.0, seed=1)
    assert zero == {"encoder": [0.0, 0.0], "decoder": [0.0, 0.0]}
    got = output_change(model, builder.batch, draws=2, scale=1e-4, seed=1)
    assert all(v > 0 for values in got.values() for v in values)
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


def _with_extra_padding(batch: dict, pad: int) -> dict:
    """The same sentences with one more padding column on each side that pads."""
    net = batch["net_input"]
    src, prev = net["src_tokens"], net["prev_output_tokens"]
    column = lambda t: torch.full((t.size(0), 1), pad, dtype=t.dtype)  # noqa: E731
    return {
        **batch,
        "net_input": {
            **net,
            "src_tokens": torch.cat([column(src), src], dim=1),  # fairseq left-pads sources
            "prev_output_tokens": torch.cat([prev, column(prev)], dim=1),
        },
    }


def test_output_change_counts_real_tokens_only(builder):
    # Padding positions carry no meaning (in Pre-LN's decoder they dominated the mean).
    model = builder.build("preln", (2, 2), HP, seed=1).double()
    padded = _with_extra_padding(builder.batch, model.encoder.padding_idx)
    plain = output_change(model, builder.batch, draws=2, scale=1e-4, seed=3)
    more = output_change(model, padded, draws=2, scale=1e-4, seed=3)
    for stack in ("encoder", "decoder"):
        assert more[stack] == pytest.approx(plain[stack], rel=1e-6)


def test_float32_measures_what_float64_does(builder):
    model = builder.build("postln", (4, 4), HP, seed=2)
    single = output_change(model.float(), builder.batch, draws=2, scale=1e-4, seed=5)
    double = output_change(model.double(), builder.batch, draws=2, scale=1e-4, seed=5)
    for stack in ("encoder", "decoder"):
        assert single[stack] == pytest.approx(double[stack], rel=1e-3)


def test_summary_of_ideal_patterns():
    n = 6
    latest_only = torch.zeros(n, n + 1)
    for i in range(n):
        latest_only[i, i + 1] = 1.0
    s = summarize(latest_only)
    assert (s.latest, s.earlier, s.input) == pytest.approx((1.0, 0.0, 0.0))
    assert s.spread == pytest.approx(1 / n)
    even = torch.zeros(n, n + 1)
    for i in range(n):
        even[i, : i + 2] = (i + 2) ** -0.5
    s = summarize(even)
    assert s.spread == pytest.approx(1.0) and s.dominance == pytest.approx(1.0)
    assert s.latest + s.earlier + s.input == pytest.approx(1.0)


def test_dependency_csv_round_trip(tmp_path, builder):
    model = builder.build("postln", (2, 2), HP, seed=1).double()
    betas = {("init", s): decompose(model, builder.batch, s).beta for s in ("encoder", "decoder")}
    write_csv(tmp_path / "d.csv", betas)
    back = read_csv(tmp_path / "d.csv")
    assert set(back) == set(betas)
    for key, beta in betas.items():
        torch.testing.assert_close(back[key], beta, atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def trained_admin_run(tiny_databin, tmp_path_factory):
    return steps_support.trained_admin_run(tiny_databin, tmp_path_factory)


def test_dependency_step_at_init_and_trained(trained_admin_run, tiny_databin, tmp_path):
    """The rule's command: the run's own profile and seed at init, and its averaged model."""
    run = trained_admin_run
    average = [
        "--checkpoints", run / "checkpoints", "--status", run / "status.json",
        "--last", 1, "--out", run / "average.json",
    ]  # fmt: skip
    steps_support.ok(steps_support.run_step("average", *average))
    dependency = [
        "--data-bin", tiny_databin, "--variant", "admin", "--depth", steps_support.DEPTH,
        "--hparams", steps_support.hparams(), "--seed", 1, "--profile", run / "profile.json",
        "--average", run / "average.json",
        "--out-png", tmp_path / "dep.png", "--out-csv", tmp_path / "dep.csv",
    ]  # fmt: skip
    steps_support.ok(steps_support.run_step("analysis.dependency", *dependency))
    betas = read_csv(tmp_path / "dep.csv")
    assert set(betas) == {(state, stack) for state in ("init", "trained")
                          for stack in ("encoder", "decoder")}  # fmt: skip
    assert betas["init", "encoder"].shape == (4, 5)  # 2 layers x 2 sublayers, + the input
    assert not torch.equal(betas["init", "encoder"], betas["trained", "encoder"])
    assert (tmp_path / "dep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dependency_step_notes_a_diverged_run(tiny_databin, tmp_path):
    average = tmp_path / "average.json"
    average.write_text('{"status": "diverged", "checkpoint": null, "averaged": [], "epochs": []}')
    dependency = [
        "--data-bin", tiny_databin, "--variant", "postln", "--depth", "1-1",
        "--hparams", steps_support.hparams(), "--average", average,
        "--out-png", tmp_path / "dep.png", "--out-csv", tmp_path / "dep.csv",
    ]  # fmt: skip
    steps_support.ok(steps_support.run_step("analysis.dependency", *dependency))
    assert {state for state, _ in read_csv(tmp_path / "dep.csv")} == {"init"}
