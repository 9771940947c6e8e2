"""Pieces shared by the steps that run ``fairseq-train``: argument checks, the
argv of one run, and running a command with its output appended to log files."""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from admin.common.errors import AdminError
from admin.common.fairseq_args import to_argv
from admin.common.fairseq_import import import_fairseq
from admin.common.run_folder import parse_depth

__all__ = [
    "check_training_options", "load_plugin", "parse_depth", "parse_hparams", "parse_json_object",
    "run_logged", "train_argv",
]  # fmt: skip

# The plugin's own folder: what fairseq's --user-dir imports (as the module fairseq_plugin).
PLUGIN_DIR = Path(__file__).resolve().parents[1] / "fairseq_plugin"
PLUGIN_MODULE = PLUGIN_DIR.name


def load_plugin() -> types.ModuleType:
    """The plugin, loaded in this process the way ``--user-dir`` loads it in fairseq's
    (``fairseq.utils.import_user_module``): once, as the top-level module
    ``fairseq_plugin``, so that the model and the optimizer are registered once."""
    import_fairseq()
    from fairseq.utils import import_user_module

    import_user_module(argparse.Namespace(user_dir=str(PLUGIN_DIR)))
    return sys.modules[PLUGIN_MODULE]


# Options the steps set themselves; in --hparams they would silently fight them.
RESERVED_HPARAMS = frozenset(
    {
        "user_dir", "save_dir", "seed", "encoder_layers", "decoder_layers",
        "init_type", "admin_profile", "encoder_normalize_before", "decoder_normalize_before",
        "restore_file", "log_format", "distributed_world_size", "distributed_rank",
        "distributed_init_method", "distributed_no_spawn", "distributed_backend", "device_id",
    }
)  # fmt: skip


def parse_json_object(text: str, flag: str) -> dict[str, Any]:
    """A command-line JSON object (``--hparams``, ``--stop``, ...), or a clear error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise AdminError(f"{flag} is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise AdminError(f"{flag} must be a JSON object of fairseq option names to values")
    return value


def check_training_options(hparams: Mapping[str, Any], where: str) -> None:
    """Training options name an admin_transformer arch and none the steps set themselves."""
    reserved = sorted(RESERVED_HPARAMS & hparams.keys())
    if reserved:
        raise AdminError(
            f"{where} sets {', '.join(reserved)}, which the steps set themselves; remove them"
        )
    arch = hparams.get("arch")
    if not isinstance(arch, str) or not arch.startswith("admin_transformer"):
        raise AdminError(f"{where} needs 'arch' set to an admin_transformer preset, got {arch!r}")


def parse_hparams(text: str) -> dict[str, Any]:
    hparams = parse_json_object(text, "--hparams")
    check_training_options(hparams, "--hparams")
    return hparams


def train_argv(
    data_bin: str | os.PathLike[str],
    hparams: Mapping[str, Any],
    depth: tuple[int, int],
    seed: int,
    variant_flags: Sequence[str],
    save_dir: str | os.PathLike[str],
) -> list[str]:
    """The ``fairseq-train`` arguments of one run (without launcher or device flags)."""
    if not Path(data_bin).is_dir():
        raise AdminError(f"data-bin {data_bin} is not a folder")
    return [
        str(data_bin), "--user-dir", str(PLUGIN_DIR), *to_argv(hparams),
        "--encoder-layers", str(depth[0]), "--decoder-layers", str(depth[1]),
        "--seed", str(seed), *variant_flags,
        "--save-dir", str(save_dir),
        # The steps parse fairseq's progress lines (status, curves): one fixed format.
        "--log-format", "simple",
    ]  # fmt: skip


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when this process dies, even by SIGKILL, so no
    orphaned trainer keeps writing checkpoints beside the next attempt."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run_logged(
    cmd: Sequence[str],
    logs: Sequence[Path],
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], bool] | None = None,
) -> int:
    """Run ``cmd`` (no shell), appending its stdout+stderr to every file in ``logs``.

    SIGTERM and SIGINT (a SLURM time limit, a preemption, Ctrl-C) are passed on
    to the child, whose exit code is returned.  ``on_line`` sees every line once it is
    logged; when it returns True the child is asked to stop (SIGTERM) and its remaining
    output is still logged.
    """
    handles = [open(path, "a", encoding="utf-8") for path in logs]  # noqa: SIM115
    proc = subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        errors="replace", env=None if env is None else dict(env),
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )  # fmt: skip

    def forward(signum: int, _frame: Any) -> None:
        proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert proc.stdout is not None
        stopping = False
        for line in proc.stdout:
            for handle in handles:
                handle.write(line)
                handle.flush()
            if on_line is not None and not stopping and on_line(line):
                stopping = True
                proc.send_signal(signal.SIGTERM)
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if proc.poll() is None:
            proc.kill()
        for handle in handles:
            handle.close()
