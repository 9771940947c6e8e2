"""Each variant through the real CLIs: fairseq-train, a resume from
checkpoint_last.pt that continues the update count, and fairseq-generate (each
``fairseq_cli`` main, started as the workflow's steps start it)."""

from __future__ import annotations

import re
import subprocess

import pytest

from admin.common.variants import VARIANTS, fairseq_flags, needs_profile
from tests.plugin_support import USER_DIR, fairseq_cli, fairseq_cli_cmd, train_cmd

UPDATES = re.compile(r"num_updates=(\d+)")


def _updates(log: str) -> list[int]:
    return [int(n) for n in UPDATES.findall(log)]


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_train_resume_generate(tiny_databin, tmp_path, variant):
    profile = tmp_path / "profile" / "admin.json"
    if needs_profile(variant):
        prof_dir = tmp_path / "profiling"
        run = fairseq_cli(
            "fairseq-train",
            *train_cmd(tiny_databin, prof_dir, *fairseq_flags(variant, profile, profiling=True)),
            cwd=tmp_path,
        )
        assert "profiling done" in run.stderr + run.stdout
        assert profile.is_file()
        assert list(prof_dir.glob("*.pt")) == []  # profiling saves no checkpoint

    save = tmp_path / "checkpoints"
    flags = fairseq_flags(variant, profile)
    first = fairseq_cli(
        "fairseq-train", *train_cmd(tiny_databin, save, *flags, "--max-update", "4"), cwd=tmp_path
    )
    assert _updates(first.stderr + first.stdout)[-1] == 4
    assert (save / "checkpoint_last.pt").is_file()

    second = fairseq_cli(
        "fairseq-train", *train_cmd(tiny_databin, save, *flags, "--max-update", "8"), cwd=tmp_path
    )
    log = second.stderr + second.stdout
    assert "Loaded checkpoint" in log and "@ 4 updates" in log
    counts = _updates(log)
    assert counts[0] == 5 and counts[-1] == 8  # continues, does not restart at 1

    gen = fairseq_cli(
        "fairseq-generate", str(tiny_databin), "--user-dir", USER_DIR,
        "--path", str(save / "checkpoint_last.pt"), "--gen-subset", "test",
        "--beam", "2", "--max-len-b", "20", "--cpu", "--max-tokens", "2000",
        # fairseq 0.12 drops a last batch that is not a multiple of this
        # (facebookresearch/fairseq#5036): with the default 8, 4 of 60 are lost.
        "--required-batch-size-multiple", "1",
        cwd=tmp_path,
    )  # fmt: skip
    out = gen.stdout + gen.stderr
    assert len(re.findall(r"^H-\d+\t", gen.stdout, re.M)) == 60
    assert re.search(r"Generate test with beam=2: BLEU4 = \d+\.\d+", out)
    # Nothing was written into the working directory by the plugin.
    assert not (tmp_path / "profile.ratio.init").exists()


@pytest.mark.slow
def test_concurrent_profiling_runs_do_not_interfere(tiny_databin, tmp_path):
    def start(name: str, seed: str) -> subprocess.Popen:
        cmd = train_cmd(
            tiny_databin, tmp_path / f"save_{name}",
            *fairseq_flags("admin", tmp_path / f"{name}.json", profiling=True), "--seed", seed,
        )  # fmt: skip
        return subprocess.Popen(
            fairseq_cli_cmd("fairseq-train", *cmd),
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    a, b = start("a", "1"), start("b", "2")
    for proc in (a, b):
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    text_a, text_b = (tmp_path / "a.json").read_text(), (tmp_path / "b.json").read_text()
    assert text_a != text_b  # different seeds, different first batches and weights
    # Each equals what the same run gives alone.
    (tmp_path / "a.json").rename(tmp_path / "a_concurrent.json")
    alone = start("a", "1")
    out, _ = alone.communicate(timeout=300)
    assert alone.returncode == 0, out
    assert (tmp_path / "a.json").read_text() == text_a
    leftovers = {p.name for p in tmp_path.iterdir()} - {
        "a.json", "b.json", "a_concurrent.json", "save_a", "save_b",
    }  # fmt: skip
    assert leftovers == set()
