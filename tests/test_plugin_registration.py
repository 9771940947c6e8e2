"""The plugin is its own ``--user-dir`` (admin/fairseq_plugin): fairseq imports it as the
module ``fairseq_plugin``, and code that needs it in-process loads it the same way, so the
model and the optimizer register exactly once."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import argparse, sys
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_REGISTRY
from fairseq.optim import OPTIMIZER_REGISTRY
from fairseq.utils import import_user_module
from admin.common.fairseq_command import PLUGIN_DIR, load_plugin

first = load_plugin()
second = load_plugin()
import_user_module(argparse.Namespace(user_dir=str(PLUGIN_DIR)))  # what fairseq-train does
print("same module:", first is second is sys.modules["fairseq_plugin"])
print("model from:", MODEL_REGISTRY["admin_transformer"].__module__)
print("arch from:", ARCH_MODEL_REGISTRY["admin_transformer_iwslt_de_en"].__module__)
print("optimizer from:", OPTIMIZER_REGISTRY["radam"].__module__)
print("second copy:", "admin.fairseq_plugin" in sys.modules)
try:
    import admin.fairseq_plugin
except ImportError as err:
    print("refused:", err)
"""


def test_the_plugin_registers_once_as_fairseq_loads_it():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                         check=True, timeout=300).stdout  # fmt: skip
    assert "same module: True" in out
    assert "model from: fairseq_plugin.model" in out
    assert "arch from: fairseq_plugin.model" in out
    assert "optimizer from: fairseq_plugin.radam" in out
    assert "second copy: False" in out
    assert "refused: the fairseq plugin was imported as 'admin.fairseq_plugin'" in out
    assert "load_plugin()" in out
