"""Admin profiling: the omegas it writes follow the recurrence of DESIGN.md.

The test recomputes the recurrence independently of the plugin: forward hooks
record each sublayer's input x_i and its branch output f_i(x_i) (after
dropout) during the profiling forward pass, and the omegas are recomputed from
those tensors alone.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from admin import profiling
from admin.fairseq_plugin.model import ProfilingFinished
from tests.plugin_support import build, first_batch


def _record_sublayers(model):
    """Hooks that capture (input, branch) pairs per stack, in sublayer order."""
    records = {"encoder": {"inputs": [], "branches": []}, "decoder": {"inputs": [], "branches": []}}
    handles = []

    def keep(store):
        return lambda _mod, _inp, out: store.append(out.detach().clone())

    def keep_input(store):
        return lambda _mod, inp: store.append(inp[0].detach().clone())

    for name, norms in (
        ("encoder", ("self_attn_layer_norm",)),
        ("decoder", ("self_attn_layer_norm", "encoder_attn_layer_norm")),
    ):
        rec = records[name]
        for layer in getattr(model, name).layers:
            # Inputs, in order: the layer input, then the output of each
            # sublayer's post-LN, which is the next sublayer's input.
            handles.append(layer.register_forward_pre_hook(keep_input(rec["inputs"])))
            for norm in norms:
                handles.append(getattr(layer, norm).register_forward_hook(keep(rec["inputs"])))
            # The branch output after dropout: every call of the layer's
            # dropout module, which fairseq applies once per sublayer.
            handles.append(layer.dropout_module.register_forward_hook(keep(rec["branches"])))
    return records, handles


def _recompute(inputs, branches):
    r, omegas = 1.0, []
    for x, f in zip(inputs, branches, strict=True):
        omegas.append(r)
        r = math.sqrt(
            (x.double() * r).var(unbiased=False).item() + f.double().var(unbiased=False).item()
        )
    return omegas


def _profile(tiny_databin, path, seed=7):
    task, model = build(
        tiny_databin, "--init-type", "adaptive-profiling", "--admin-profile", str(path), seed=seed
    )
    batch = first_batch(task, "train")
    model.train()
    return model, batch


def test_profile_follows_the_recurrence(tiny_databin, tmp_path):
    path = tmp_path / "profile.json"
    model, batch = _profile(tiny_databin, path)
    records, handles = _record_sublayers(model)
    with pytest.raises(ProfilingFinished) as done:
        model(**batch["net_input"])
    for handle in handles:
        handle.remove()
    assert done.value.code == 0

    doc = json.loads(path.read_text())
    assert doc["encoder"]["layers"] == 3 and doc["decoder"]["layers"] == 3
    assert doc["encoder"]["embed_dim"] == 64 and doc["decoder"]["embed_dim"] == 64
    for name, per_layer in (("encoder", 2), ("decoder", 3)):
        written = doc[name]["omegas"]
        rec = records[name]
        assert len(rec["inputs"]) == len(rec["branches"]) == 3 * per_layer
        expected = _recompute(rec["inputs"], rec["branches"])
        # The model scales in float32, the test in float64: agree to float32 precision.
        assert written == pytest.approx(expected, rel=1e-6)
        assert written[0] == 1.0
        # Each sublayer adds variance, so omega grows strictly with depth.
        assert all(b > a for a, b in zip(written, written[1:], strict=False))
    # The model's omegas were set to the profiled values on the way.
    enc = torch.cat([layer.omega[:, 0] for layer in model.encoder.layers])
    assert enc.tolist() == pytest.approx(doc["encoder"]["omegas"])


def test_profiling_refuses_more_than_one_process(tiny_databin, tmp_path):
    with pytest.raises(profiling.ProfileError, match="one process"):
        build(
            tiny_databin,
            "--init-type", "adaptive-profiling",
            "--admin-profile", str(tmp_path / "p.json"),
            "--distributed-world-size", "2",
        )  # fmt: skip


def test_profiling_refuses_to_start_from_a_checkpoint(tiny_databin, tmp_path):
    model, _ = _profile(tiny_databin, tmp_path / "p.json")
    with pytest.raises(profiling.ProfileError, match="empty --save-dir"):
        model.load_state_dict(model.state_dict())
