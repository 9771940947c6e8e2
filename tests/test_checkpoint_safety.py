"""Checkpoints load with torch's weights-only check on; nothing else is allowed.
And the bytes of their tensors, each shared storage counted once."""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys

import pytest
import torch

from admin.common.checkpoints import SAFE_CHECKPOINT_GLOBALS, load_checkpoint, tensor_bytes


class _Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _fairseq_like(path):
    torch.save(
        {
            "cfg": {"model": argparse.Namespace(arch="admin_transformer", encoder_layers=3)},
            "model": {"w": torch.ones(2)},
        },
        path,
    )


def test_allowlist_is_exactly_the_namespace():
    assert SAFE_CHECKPOINT_GLOBALS == [argparse.Namespace]


def test_fairseq_checkpoint_loads(tmp_path):
    path = tmp_path / "ckpt.pt"
    _fairseq_like(path)
    state = load_checkpoint(path)
    assert state["cfg"]["model"].encoder_layers == 3
    assert torch.equal(state["model"]["w"], torch.ones(2))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "x": _Exploit(str(marker))}, path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_checkpoint(path)
    assert not marker.exists()


def test_plugin_import_keeps_weights_only_on(tmp_path):
    """After the plugin registers itself (as fairseq-train/generate do), plain
    torch.load still refuses arbitrary globals but accepts fairseq checkpoints."""
    good, evil, marker = tmp_path / "good.pt", tmp_path / "evil.pt", tmp_path / "pwned"
    _fairseq_like(good)
    torch.save({"x": _Exploit(str(marker))}, evil)
    code = f"""
import pickle, torch, fairseq
from admin.common.fairseq_command import load_plugin
load_plugin()
torch.load({str(good)!r})
try:
    torch.load({str(evil)!r})
except pickle.UnpicklingError as err:
    print("refused:", "Weights only load failed" in str(err))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "refused: True" in out.stdout
    assert not marker.exists()


def test_loading_a_checkpoint_keeps_the_plugins_registration(tmp_path):
    """load_checkpoint after the plugin registered Namespace (as a step that also runs
    fairseq's own loader in-process does) leaves it registered: torch's safe_globals
    context would remove it on exit, and fairseq's next torch.load would then fail."""
    good = tmp_path / "good.pt"
    _fairseq_like(good)
    code = f"""
import argparse, torch
from admin.common.checkpoints import allow_fairseq_checkpoints, load_checkpoint
allow_fairseq_checkpoints()
load_checkpoint({str(good)!r})
print("still allowed:", argparse.Namespace in torch.serialization.get_safe_globals())
torch.load({str(good)!r})
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "still allowed: True" in out.stdout


def test_tensor_bytes_counts_a_shared_storage_once(tmp_path):
    """Tied weights and views are one storage: its bytes count once, in memory and after
    torch.save and load_checkpoint (which keep the sharing)."""
    embed = torch.zeros(10, 4)  # 160 bytes, three names (a shared embedding, a view)
    moment = torch.zeros(3, dtype=torch.float64)  # 24 bytes
    state = {
        "model": {"encoder.embed": embed, "decoder.embed": embed, "row": embed[2]},
        "last_optimizer_state": [moment, (moment,)],
        "extra": {"epoch": 3, "note": "not a tensor"},
    }
    real = embed.untyped_storage().nbytes() + moment.untyped_storage().nbytes()
    assert real == 10 * 4 * 4 + 3 * 8
    assert tensor_bytes(state) == real
    assert tensor_bytes(state["model"]) == embed.untyped_storage().nbytes()
    path = tmp_path / "ckpt.pt"
    torch.save(state, path)
    assert tensor_bytes(load_checkpoint(path)) == real
    assert tensor_bytes({"epoch": 3}) == 0
