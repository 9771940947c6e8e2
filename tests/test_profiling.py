"""Admin profiling: the omegas it writes follow the recurrence in admin/common/profiling.py.

The test recomputes the recurrence independently of the plugin: global forward
hooks record, for every Admin layer, each sublayer's input x_i and its branch
output f_i(x_i) after dropout during the profiling run, and the omegas are
recomputed from those tensors alone.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn.modules.module import (
    register_module_forward_hook,
    register_module_forward_pre_hook,
)

from admin.common import profiling
from tests.plugin_support import PLUGIN, build, parse_train_args

AdminDecoderLayer = PLUGIN.layers.AdminDecoderLayer
AdminEncoderLayer = PLUGIN.layers.AdminEncoderLayer
ProfilingFinished = PLUGIN.model.ProfilingFinished
first_training_batch = PLUGIN.model.first_training_batch

POST_LN_NORMS = {
    AdminEncoderLayer: ("self_attn_layer_norm",),
    AdminDecoderLayer: ("self_attn_layer_norm", "encoder_attn_layer_norm"),
}


class SublayerTap:
    """Records (input, branch) per stack for every Admin layer that runs."""

    def __init__(self):
        self.records = {AdminEncoderLayer: ([], []), AdminDecoderLayer: ([], [])}
        self.current = None

    def pre(self, module, args):
        if isinstance(module, AdminEncoderLayer | AdminDecoderLayer):
            self.current = module
            self.records[type(module)][0].append(args[0].detach().clone())

    def post(self, module, _args, out):
        layer = self.current
        if layer is None:
            return
        inputs, branches = self.records[type(layer)]
        if module is layer.dropout_module:  # the branch output, after dropout
            branches.append(out.detach().clone())
        elif any(module is getattr(layer, n) for n in POST_LN_NORMS[type(layer)]):
            inputs.append(out.detach().clone())  # the next sublayer's input
        elif module is layer:
            self.current = None


def _recompute(inputs, branches):
    r, omegas = 1.0, []
    for x, f in zip(inputs, branches, strict=True):
        omegas.append(r)
        var_in = (x.double() * r).var(unbiased=False).item()
        r = math.sqrt(var_in + f.double().var(unbiased=False).item())
    return omegas


def test_profile_follows_the_recurrence(tiny_databin, tmp_path):
    path = tmp_path / "profile.json"
    tap = SublayerTap()
    handles = [register_module_forward_pre_hook(tap.pre), register_module_forward_hook(tap.post)]
    try:
        with pytest.raises(ProfilingFinished) as done:
            build(tiny_databin, "--init-type", "adaptive-profiling", "--admin-profile", str(path))
    finally:
        for handle in handles:
            handle.remove()
    assert done.value.code == 0 and done.value.path == str(path)

    doc = json.loads(path.read_text())
    assert doc["encoder"]["layers"] == 3 and doc["decoder"]["layers"] == 3
    assert doc["encoder"]["embed_dim"] == 64 and doc["decoder"]["embed_dim"] == 64
    for name, cls, per_layer in (
        ("encoder", AdminEncoderLayer, 2),
        ("decoder", AdminDecoderLayer, 3),
    ):
        written = doc[name]["omegas"]
        inputs, branches = tap.records[cls]
        assert len(inputs) == len(branches) == 3 * per_layer  # one forward pass
        # The model scales in float32, the test in float64: agree to float32 precision.
        assert written == pytest.approx(_recompute(inputs, branches), rel=1e-6)
        assert written[0] == 1.0
        # Each sublayer adds variance, so omega grows strictly with depth.
        assert all(b > a for a, b in zip(written, written[1:], strict=False))
    assert doc["meta"]["sentences"] == done.value.profile.meta["sentences"] > 1


def test_profiling_uses_fairseqs_first_training_batch(tiny_databin, tmp_path):
    args = parse_train_args(tiny_databin, "--init-type", "admin-logn")
    task, model = build(tiny_databin, "--init-type", "admin-logn")
    ours = first_training_batch(args, task, model)
    # What fairseq-train's own iterator yields first (workers and buffer as configured).
    itr = task.get_batch_iterator(
        dataset=task.dataset(args.train_subset),
        max_tokens=args.max_tokens,
        max_sentences=args.batch_size,
        max_positions=(1024, 1024),
        ignore_invalid_inputs=True,
        required_batch_size_multiple=args.required_batch_size_multiple,
        seed=args.seed,
        num_workers=1,
        epoch=1,
        data_buffer_size=10,
    )
    theirs = next(iter(itr.next_epoch_itr(shuffle=True)))
    assert torch.equal(ours["id"], theirs["id"])
    assert torch.equal(ours["net_input"]["src_tokens"], theirs["net_input"]["src_tokens"])


def test_profiling_refuses_more_than_one_process(tiny_databin, tmp_path):
    with pytest.raises(profiling.ProfileError, match="one process"):
        build(
            tiny_databin,
            "--init-type", "adaptive-profiling",
            "--admin-profile", str(tmp_path / "p.json"),
            "--distributed-world-size", "2",
        )  # fmt: skip
    assert not (tmp_path / "p.json").exists()


def test_a_half_precision_run_is_profiled_in_its_precision_on_a_gpu_only():
    dtype = PLUGIN.model.profiling_dtype
    assert dtype("fp16", use_cuda=True) == torch.float16
    assert dtype("bf16", use_cuda=True) == torch.bfloat16
    assert dtype("fp32", use_cuda=True) == torch.float32
    # the CPU steps train in fp32 (fairseq's fp16 and bf16 are GPU-only): so is the profile
    assert dtype("fp16", use_cuda=False) == dtype("bf16", use_cuda=False) == torch.float32


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_a_half_precision_profile_follows_the_fp32_one(tiny_databin, half):
    """The forward pass the GPU path profiles after casting the model, run on the CPU:
    the recurrence is the same, in float64 over half-precision activations, so the omegas
    agree with the fp32 profile of the same batch to the half type's precision."""
    args = parse_train_args(tiny_databin, "--init-type", "admin-logn")
    task, model = build(tiny_databin, "--init-type", "admin-logn")
    batch = first_training_batch(args, task, model)
    torch.manual_seed(0)
    model.eval()  # no dropout: both passes see the same activations up to rounding
    full = model.profile(**batch["net_input"])
    model.to(half)
    cast = model.profile(**batch["net_input"])
    assert cast.meta["dtype"] == str(half) and full.meta["dtype"] == "torch.float32"
    tolerance = {torch.bfloat16: 2e-2, torch.float16: 2e-3}[half]
    for name in ("encoder", "decoder"):
        ours, ref = cast.stack(name).omegas, full.stack(name).omegas
        assert ours == pytest.approx(ref, rel=tolerance), name
        assert ours != ref  # it did run in the half type
