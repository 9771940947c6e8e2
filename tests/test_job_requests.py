"""admin.common.job_requests: one SLURM job per run, and the GPU request that lets the
run's steps share it (docs/slurm-internals.md, "One job per run")."""

from __future__ import annotations

import pytest

from admin.common.errors import AdminError
from admin.common.job_requests import (
    RUN_STEPS,
    depth_priority,
    group_name,
    run_group,
    train_gpu,
    train_gres,
)
from admin.common.run_folder import RunKey
from admin.status_jobs import group_rules

KEY = RunKey("wmt14_en_de", "admin", "6-6", 1111)
WHERE = "rule train (dataset=wmt14_en_de, ...)"


def test_a_runs_steps_share_one_group_named_after_the_run():
    assert {run_group(step, KEY, 1) for step in RUN_STEPS} == {"run_wmt14_en_de_admin_6-6_1111"}
    # a multi-node training job stays alone; its average and evaluate still share one
    assert run_group("train", KEY, 2) is None
    assert run_group("average", KEY, 2) == run_group("evaluate", KEY, 2) == group_name(KEY)
    with pytest.raises(ValueError, match="'profile' is not one of a run's steps"):
        run_group("profile", KEY, 1)


def test_deeper_runs_have_the_higher_priority():
    assert depth_priority("8-8") == 16 and depth_priority("60-12") == 72
    assert sorted(["2-2", "60-12", "6-6", "8-8"], key=depth_priority, reverse=True) == [
        "60-12", "8-8", "6-6", "2-2"]  # fmt: skip
    with pytest.raises(AdminError, match="depth '6x6' is not"):
        depth_priority("6x6")


@pytest.mark.parametrize("gpus,nodes,gpu,gres", [
    (8, 1, 8, ""),  # one node: a job-wide count the group's evaluate step can join
    (8, 2, None, "gpu:8"),  # several nodes: per node, in a job of its own
    (0, 1, None, ""),  # a CPU-only preset (the demo, the rehearsal's CPU runs)
])  # fmt: skip
def test_one_node_asks_gpu_and_several_ask_gres(gpus, nodes, gpu, gres):
    assert train_gpu(gpus, nodes) == gpu
    assert train_gres(gpus, nodes) == gres


def test_a_local_cap_is_checked():
    assert train_gpu(4, 1, cap=8, where=WHERE) == 4
    with pytest.raises(AdminError, match=r"rule train \(dataset=wmt14_en_de, \.\.\.\) needs 4 "
                       r"GPUs, more than --resources gpu=2"):  # fmt: skip
        train_gpu(4, 1, cap=2, where=WHERE)
    with pytest.raises(AdminError, match="trains on 2 nodes of 8 GPUs: a local run cannot"):
        train_gpu(8, 2, cap=16, where=WHERE)


def test_status_finds_a_runs_steps_in_its_group_jobs_comment():
    """The plugin comments a group job rule_<group>_<its rules sorted, joined by _>."""
    name = group_name(KEY)
    assert group_rules(f"rule_{name}_average_evaluate_train", KEY) == (
        "average", "evaluate", "train")  # fmt: skip
    assert group_rules(f"rule_{name}_average_evaluate", KEY) == ("average", "evaluate")
    # seed 11111 and another depth are other runs; a run's own rule job is no group job
    other = RunKey("wmt14_en_de", "admin", "6-6", 11111)
    assert group_rules(f"rule_{group_name(other)}_average_evaluate_train", KEY) == ()
    assert group_rules("rule_run_wmt14_en_de_admin_6-6_1111_profile", KEY) == ()
    assert group_rules("rule_train_wildcards_wmt14_en_de_admin_6-6_1111", KEY) == ()
