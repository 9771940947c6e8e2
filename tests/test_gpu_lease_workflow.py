"""One resource name caps the GPUs of every GPU job of a local run: ``--resources gpu=N``
counts the train jobs too, as it counts the profile and evaluate jobs, while the
train rule's SLURM request stays ``--gres`` (its ``gpu`` resource exists only on a local
run that caps ``gpu``).  Plans are ``snakemake -n`` of the real workflow."""

from __future__ import annotations

import pytest

from tests.workflow_support import plan, shell_option

GPU_RULES = ("profile", "train", "evaluate")


def _gpus(jobs, rule):
    return {job["resources"].get("gpu") for job in jobs if job["rule"] == rule}


def test_the_gpu_cap_counts_training_too():
    jobs = plan("paper_iwslt14_de_en", "--resources", "gpu=8")
    for rule in GPU_RULES:
        assert _gpus(jobs, rule) == {1}, rule
    for job in jobs:
        if job["rule"] == "train":
            # the rest of its request is today's
            res = job["resources"]
            # one node: its GPUs as `gpu` (no per-node gres; docs/slurm-internals.md)
            assert (res["gres"], res["gpus_per_node"], res["nodes"]) == ("", 1, 1)
            assert shell_option(job, "--nproc-per-node") == "1"
            assert shell_option(job, "--device") == "cuda"
        elif job["rule"] not in GPU_RULES:
            assert not job["resources"].get("gpu"), job
    en_de = plan("paper_wmt14_en_de", "--resources", "gpu=8")
    assert _gpus(en_de, "train") == {4} and _gpus(en_de, "evaluate") == {1}


def test_without_a_cap_every_gpu_step_declares_its_gpus():
    """Without ``--resources gpu=N`` Snakemake counts ``gpu`` against nothing: the
    declaration is what a cap, or the SLURM group job of a run, would count."""
    jobs = plan("paper_iwslt14_de_en")
    assert _gpus(jobs, "train") == _gpus(jobs, "profile") == _gpus(jobs, "evaluate") == {1}
    # a two-node training asks per node (gres) and no job-wide count, cap or not
    en_fr = [j for j in plan("paper_wmt14_en_fr") if j["rule"] == "train"]
    shapes = {(j["resources"]["nodes"], j["resources"].get("gpu"), j["resources"]["gres"])
              for j in en_fr}  # fmt: skip
    assert shapes == {(1, 8, ""), (2, None, "gpu:8")}, shapes


@pytest.mark.parametrize(
    ("target", "cap", "message"),
    [
        ("paper_wmt14_en_de", "gpu=2", "rule train (dataset=wmt14_en_de, variant=postln, "
         "depth=6-6, seed=1111) needs 4 GPUs, more than --resources gpu=2; lower "
         "resources.train.gpus"),
        ("paper_wmt14_en_fr", "gpu=8", "rule train (dataset=wmt14_en_fr, variant=postln, "
         "depth=60-12, seed=1111) trains on 2 nodes of 8 GPUs: a local run cannot start it"),
    ],
)  # fmt: skip
def test_a_training_that_cannot_fit_the_cap_stops_the_plan(target, cap, message):
    with pytest.raises(AssertionError) as err:
        plan(target, "--resources", cap)
    assert message in str(err.value)


def test_the_slurm_executors_are_not_local():
    """What keeps a local ``--resources gpu=N`` cap from being checked against SLURM
    jobs: both SLURM executors run jobs elsewhere (``workflow.local_exec`` is false)."""
    from snakemake_executor_plugin_slurm import common_settings as submit
    from snakemake_executor_plugin_slurm_jobstep import common_settings as jobstep

    assert not submit.local_exec and not jobstep.local_exec
