"""admin.common.cluster_check: the partitions' limits read from scontrol, the requests the SLURM
executor plugin would submit, and the jobs that no node could ever run.

The local cluster's output is real (captured below); the GRES and time formats it does
not show come from synthetic partitions in the same format.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from admin.common import cluster_check as cc
from admin.common.errors import AdminError
from tests.slurm_support import mock_job, sbatch_line

# Captured from the local two-node cluster (scripts/slurm-local-cluster.sh, Debian
# slurm-wlm 22.05.8) on 2026-12-02 with `scontrol show partition --oneliner --all` and
# `scontrol show node --oneliner --all`.
LOCAL_PARTITIONS = """\
PartitionName=local AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES QoS=N/A DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=n[1-2] PriorityJobFactor=1 PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=UP TotalCPUs=4 TotalNodes=2 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED MaxMemPerNode=UNLIMITED TRES=cpu=4,mem=24104M,node=2,billing=4
"""  # noqa: E501
LOCAL_NODES = """\
NodeName=n1 Arch=x86_64 CoresPerSocket=2  CPUAlloc=0 CPUEfctv=2 CPUTot=2 CPULoad=5.03 AvailableFeatures=(null) ActiveFeatures=(null) Gres=gpu:2 NodeAddr=127.0.0.1 NodeHostName=vm Port=17001 Version=22.05.8 OS=Linux 6.18.44-fc-v857 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=12052 AllocMem=0 FreeMem=21342 Sockets=1 Boards=1 State=IDLE ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=local  BootTime=2026-12-02T02:45:06 SlurmdStartTime=2026-12-02T03:45:42 LastBusyTime=2026-12-02T03:46:39 CfgTRES=cpu=2,mem=12052M,billing=2 AllocTRES= CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s
NodeName=n2 Arch=x86_64 CoresPerSocket=2  CPUAlloc=0 CPUEfctv=2 CPUTot=2 CPULoad=5.03 AvailableFeatures=(null) ActiveFeatures=(null) Gres=gpu:2 NodeAddr=127.0.0.1 NodeHostName=vm Port=17002 Version=22.05.8 OS=Linux 6.18.44-fc-v857 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=12052 AllocMem=0 FreeMem=21342 Sockets=1 Boards=1 State=IDLE ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=local  BootTime=2026-12-02T02:45:05 SlurmdStartTime=2026-12-02T03:45:42 LastBusyTime=2026-12-02T03:46:08 CfgTRES=cpu=2,mem=12052M,billing=2 AllocTRES= CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s
"""  # noqa: E501

# A synthetic GPU cluster in the same format (fields trimmed): a default CPU partition
# with a 2-day limit, an A100 partition of one 8-GPU and one 4-GPU node (socket-bound
# typed GRES) that caps CPUs per node and job size, and a node of two GPU models.
SYNTH_PARTITIONS = """\
PartitionName=cpu Default=YES MaxNodes=UNLIMITED MaxTime=2-00:00:00 MaxCPUsPerNode=UNLIMITED MaxMemPerNode=UNLIMITED Nodes=c[1-2] State=UP
PartitionName=a100 Default=NO MaxNodes=2 MaxTime=1-12:00:00 MaxCPUsPerNode=32 MaxMemPerNode=UNLIMITED Nodes=g[1-2] State=UP
PartitionName=mixed Default=NO MaxNodes=UNLIMITED MaxTime=infinite MaxCPUsPerNode=UNLIMITED MaxMemPerNode=200000 Nodes=m1 State=UP
PartitionName=empty Default=NO MaxTime=30:00 Nodes=(null) State=UP
"""  # noqa: E501
SYNTH_NODES = """\
NodeName=c1 CPUTot=64 RealMemory=256000 Gres=(null) State=IDLE Partitions=cpu
NodeName=c2 CPUTot=32 RealMemory=128000 Gres=(null) State=IDLE Partitions=cpu
NodeName=g1 CPUEfctv=62 CPUTot=64 RealMemory=512000 Gres=gpu:a100:8(S:0-1) State=MIXED Partitions=a100
NodeName=g2 CPUEfctv=48 CPUTot=48 RealMemory=256000 Gres=gpu:a100:4(S:0) State=IDLE Partitions=a100
NodeName=m1 CPUTot=16 RealMemory=256000 Gres=gpu:a100:2(S:0),gpu:v100:2(S:1),shard:8 State=IDLE Partitions=mixed
"""  # noqa: E501

TRAIN_WILDCARDS = (("dataset", "wmt14_en_fr"), ("variant", "admin"), ("depth", "60-12"))


@pytest.fixture
def local() -> cc.Cluster:
    return cc.cluster_from_scontrol(LOCAL_PARTITIONS, LOCAL_NODES)


@pytest.fixture
def synth() -> cc.Cluster:
    return cc.cluster_from_scontrol(SYNTH_PARTITIONS, SYNTH_NODES)


def job(rule: str, threads: int, wildcards: Any = (), **resources: Any) -> cc.Job:
    return cc.Job(rule, tuple(wildcards), cc.request_of(threads, resources))


def test_local_cluster_limits(local: cc.Cluster) -> None:
    (part,) = local.partitions
    assert local.default is part and part.name == "local"
    assert [n.name for n in part.nodes] == ["n1", "n2"]
    for node in part.nodes:
        assert (node.cpus, node.mem_mb, node.gpu_count()) == (2, 12052, 2)
    assert part.max_time is None and part.max_nodes is None
    assert part.max_cpus_per_node is None and part.max_mem_per_node is None


def test_local_bpe_with_the_global_defaults_is_reported(local: cc.Cluster) -> None:
    # the case seen on the local cluster: 8 CPUs per task, PENDING for ever
    bpe = job("bpe", 8, [("dataset", "demo")], mem_mb=2000, runtime=720)
    assert cc.problems([bpe], local) == [
        "rule bpe (dataset=demo) asks for 1 node x (8 CPUs, 2000 MB), 720 min; "
        "partition 'local' has 2 nodes of at most 2 CPUs, 12052 MB, 2 GPUs, no time limit: "
        "too many CPUs"
    ]


def test_local_requests_that_fit_are_not_reported(local: cc.Cluster) -> None:
    fitting = [
        job("demo_corpus", 1, [("dataset", "demo")], mem_mb=2000, runtime=10),
        job("tokenize", 2, [("dataset", "demo")], mem_mb=12052, runtime=60),
        # both nodes, all their CPUs and GPUs (the two-node training of the tests)
        job("train", 2, TRAIN_WILDCARDS, nodes=2, gres="gpu:2", mem_mb=12000, runtime=99999),
        job("evaluate", 1, gpu=2, slurm_partition="local"),
        job("table", 1),
    ]
    assert cc.problems(fitting, local) == []


def test_local_paper_training_is_reported_with_every_shortfall(local: cc.Cluster) -> None:
    train = job(
        "train", 64, [*TRAIN_WILDCARDS, ("seed", "1111")],
        nodes=2, gres="gpu:8", mem_mb=256000, runtime=2880,
    )  # fmt: skip
    assert cc.problems([train], local) == [
        "rule train (dataset=wmt14_en_fr, variant=admin, depth=60-12, seed=1111) asks for "
        "2 nodes x (64 CPUs, 256000 MB, 8 GPUs), 2880 min; partition 'local' has 2 nodes of "
        "at most 2 CPUs, 12052 MB, 2 GPUs, no time limit: too many CPUs, too much memory, "
        "too many GPUs"
    ]
    three = job("train", 1, TRAIN_WILDCARDS, nodes=3, gres="gpu:1")
    assert cc.problems([three], local)[0].endswith(": too many nodes")


def test_identical_problems_are_grouped(local: cc.Cluster) -> None:
    seeds = [
        job("train", 4, [("dataset", "iwslt14_de_en"), ("seed", str(s))], gres="gpu:1")
        for s in range(1111, 1126)
    ]
    other = job("train", 4, [("dataset", "iwslt14_de_en"), ("seed", "9")], gres="gpu:2")
    lines = cc.problems([*seeds, other], local)
    assert lines == [
        "15 jobs of rule train (the first: dataset=iwslt14_de_en, seed=1111) asks for "
        "1 node x (4 CPUs, 1 GPU); partition 'local' has 2 nodes of at most 2 CPUs, "
        "12052 MB, 2 GPUs, no time limit: too many CPUs",
        "rule train (dataset=iwslt14_de_en, seed=9) asks for 1 node x (4 CPUs, 2 GPUs); "
        "partition 'local' has 2 nodes of at most 2 CPUs, 12052 MB, 2 GPUs, no time limit: "
        "too many CPUs",
    ]


def test_unknown_partition_and_no_default(local: cc.Cluster, synth: cc.Cluster) -> None:
    wrong = job("profile", 1, [("dataset", "demo")], gpu=1, slurm_partition="gpu")
    assert cc.problems([wrong], local) == [
        "rule profile (dataset=demo) asks for 1 node x (1 CPU, 1 GPU); "
        "the cluster has no partition 'gpu' (it has: local)"
    ]
    no_default = cc.Cluster(tuple(p for p in synth.partitions if not p.default))
    assert cc.problems([job("table", 1)], no_default) == [
        "rule table asks for 1 node x (1 CPU); it names no partition and the cluster "
        "has no default one (it has: a100, mixed, empty)"
    ]


def test_the_error_message_says_how_to_fix_it(local: cc.Cluster) -> None:
    class Rule:
        name = "bpe"

    class SnakemakeJob:  # the attributes a snakemake 9 Job offers (check_jobs reads them)
        rule = Rule()
        wildcards_dict = {"dataset": "demo"}
        threads = 8
        resources = {"mem_mb": 16000, "runtime": 720, "_cores": 8, "tmpdir": "<TBD>"}

        def is_group(self) -> bool:
            return False

    with pytest.raises(AdminError) as err:
        cc.check_jobs([SnakemakeJob()], local)
    text = str(err.value)
    assert text.startswith("SLURM can never run these jobs, so nothing was submitted:\n")
    assert "  - rule bpe (dataset=demo) asks for 1 node x (8 CPUs, 16000 MB), 720 min;" in text
    assert "too many CPUs, too much memory" in text
    assert "resources.<rule>" in text and "config/README.md, section Resources" in text
    assert "slurm_partition" in text
    SnakemakeJob.threads, SnakemakeJob.resources = 2, {"mem_mb": 2000}
    cc.check_jobs([SnakemakeJob()], local)  # fits: no error
    cc.check_jobs([], None)  # nothing to submit: SLURM is not even asked


def test_a_runs_group_job_is_checked_as_one_request(local: cc.Cluster) -> None:
    """A run's train, average and evaluate steps are one SLURM job: its time limit is
    their sum, which may pass a partition's limit that each step alone fits."""

    class GroupJob:  # the attributes a snakemake 9 GroupJob offers
        name = "run_demo_admin_6-6_1_average_evaluate_train"
        threads = 2
        resources = {"mem_mb": 2000, "runtime": 2880 + 60 + 120, "gpu": 2, "_cores": 2}

        def is_group(self) -> bool:
            return True

    limited = cc.Cluster(tuple(
        dataclasses.replace(p, max_time=2880) for p in local.partitions))  # fmt: skip
    with pytest.raises(AdminError) as err:
        cc.check_jobs([GroupJob()], limited)
    assert ("  - group job run_demo_admin_6-6_1_average_evaluate_train asks for 1 node x "
            "(2 CPUs, 2000 MB, 2 GPUs), 3060 min;") in str(err.value)  # fmt: skip
    assert "too long" in str(err.value)
    GroupJob.resources = {**GroupJob.resources, "runtime": 2880}
    cc.check_jobs([GroupJob()], limited)


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("UNLIMITED", None), ("infinite", None), ("2-00:00:00", 2880), ("1-12:00:00", 2160),
        ("0-00:30:59", 30), ("3-4", 4560), ("3-4:05", 4565), ("12:00:00", 720),
        ("1:30:00", 90), ("30:00", 30), ("90:30", 90), ("45", 45),
    ],
)  # fmt: skip
def test_time_formats(text: str, minutes: int | None) -> None:
    assert cc.parse_time(text) == minutes


@pytest.mark.parametrize("text", ["", "2 days", "1-2-3", "1:2:3:4", "NONE"])
def test_bad_time_is_an_error(text: str) -> None:
    with pytest.raises(AdminError, match=re.escape(repr(text))):
        cc.parse_time(text)


@pytest.mark.parametrize(
    ("gres", "gpus"),
    [
        ("gpu:2", ((None, 2),)),
        ("gpu:a100:8", (("a100", 8),)),
        ("gpu:2(S:0-1)", ((None, 2),)),
        ("gpu:a100:4(S:0,1),gpu:v100:2(S:2-3)", (("a100", 4), ("v100", 2))),
        ("gpu:tesla:no_consume:2", (("tesla", 2),)),
        ("gpu", ((None, 1),)),
        ("(null)", ()),
        ("", ()),
        ("shard:8,mps:200", ()),
    ],
)
def test_gres_formats(gres: str, gpus: tuple[tuple[str | None, int], ...]) -> None:
    assert cc.parse_gpus(gres) == gpus


def test_synthetic_cluster_limits(synth: cc.Cluster) -> None:
    cpu, a100, mixed, empty = synth.partitions
    assert synth.default is cpu and not (a100.default or mixed.default)
    assert (cpu.max_time, a100.max_time, mixed.max_time, empty.max_time) == (2880, 2160, None, 30)
    assert [(n.name, a100.cpus(n), n.gpu_count("a100")) for n in a100.nodes] == [
        ("g1", 32, 8),  # CPUEfctv 62, capped by MaxCPUsPerNode=32
        ("g2", 32, 4),
    ]
    (m1,) = mixed.nodes
    assert (m1.gpu_count(), m1.gpu_count("a100"), m1.gpu_count("v100"), mixed.mem_mb(m1)) == (
        4, 2, 2, 200000,
    )  # fmt: skip
    assert a100.max_nodes == 2 and empty.nodes == ()


def test_synthetic_cluster_checks(synth: cc.Cluster) -> None:
    def why(threads: int, **resources: Any) -> str:
        lines = cc.problems([job("r", threads, **resources)], synth)
        return lines[0].split("; ", 1)[1] if lines else ""

    # the default partition, its largest node: 64 CPUs, 256000 MB
    assert why(64, mem_mb=256000, runtime=2880) == ""
    assert why(64, mem_mb=256000, runtime=2881) == (
        "partition 'cpu' has 2 nodes of at most 64 CPUs, 256000 MB, 0 GPUs, "
        "a time limit of 2880 min: too long"
    )
    # a 2-node job is limited by the second node: 32 CPUs
    assert why(32, nodes=2) == ""
    assert why(33, nodes=2, runtime="1-00:00:00") == (
        "partition 'cpu' has 2 nodes of at most 32 CPUs, 128000 MB, 0 GPUs, "
        "a time limit of 2880 min: too many CPUs"
    )
    # GPU partition: 8 GPUs on one node, 4 on two; MaxCPUsPerNode caps the 62 CPUs
    assert why(32, slurm_partition="a100", gres="gpu:a100:8") == ""
    assert why(8, slurm_partition="a100", gres="gpu:8", nodes=2) == (
        "partition 'a100' has 2 nodes of at most 32 CPUs, 256000 MB, 4 GPUs, "
        "a time limit of 2160 min: too many GPUs"
    )
    assert why(62, slurm_partition="a100", gpu=1) == (
        "partition 'a100' has 2 nodes of at most 32 CPUs, 512000 MB, 8 GPUs, "
        "a time limit of 2160 min: too many CPUs"
    )
    # --gpus=N is per job: 16 GPUs over 2 nodes is 8 per node
    assert why(1, slurm_partition="a100", gpu=12, nodes=2).endswith("too many GPUs")
    assert why(1, slurm_partition="a100", gpu=8, nodes=2) == ""
    # a typed request counts only that model's GPUs
    assert why(1, slurm_partition="mixed", gres="gpu:v100:2") == ""
    assert why(1, slurm_partition="mixed", gpu=3, gpu_model="v100") == (
        "partition 'mixed' has 1 node of at most 16 CPUs, 200000 MB, 2 v100 GPUs, "
        "no time limit: too many GPUs"
    )
    assert why(1, slurm_partition="mixed", gpu=4) == ""
    # MaxMemPerNode caps the node's 256000 MB; MaxNodes caps the job's nodes
    assert why(1, slurm_partition="mixed", mem_mb=200001).endswith("too much memory")
    assert why(1, slurm_partition="a100", nodes=3).endswith("too many nodes")
    assert why(1, slurm_partition="empty").endswith("too many nodes")


def test_nodes_that_fit_one_limit_each_but_not_all(synth: cc.Cluster) -> None:
    # one node has the CPUs, the other the memory, none both
    part = cc.Partition(
        "p",
        (cc.Node("x", 64, 1000), cc.Node("y", 8, 512000)),
        default=True,
    )
    lines = cc.problems([job("r", 32, mem_mb=256000)], cc.Cluster((part,)))
    assert lines == [
        "rule r asks for 1 node x (32 CPUs, 256000 MB); partition 'p' has 2 nodes of at "
        "most 64 CPUs, 512000 MB, 0 GPUs, no time limit: no 1 node with all of it at once"
    ]


def test_auto_partition_takes_any_that_fits(synth: cc.Cluster) -> None:
    big = job("r", 32, gres="gpu:4")
    assert cc.problems([big], synth) != []  # the default (CPU) partition has no GPUs
    assert cc.problems([big], synth, auto_partition=True) == []  # a100's g2 has both
    huge = job("r", 128)
    (line,) = cc.problems([huge], synth, auto_partition=True)
    assert "no partition fits it: partition 'cpu' has" in line
    assert "(too many CPUs); partition 'a100' has" in line
    assert line.endswith("partition 'empty' has 0 nodes of at most 0 CPUs, 0 MB, 0 GPUs, "
                         "a time limit of 30 min (too many nodes)")  # fmt: skip
    named = job("r", 128, slurm_partition="cpu")  # a named partition is kept
    assert "partition 'cpu' has 2 nodes" in cc.problems([named], synth, auto_partition=True)[0]


def test_bad_scontrol_output_is_an_error() -> None:
    with pytest.raises(AdminError, match="node n1 has RealMemory='lots', not a number"):
        cc.cluster_from_scontrol(LOCAL_PARTITIONS, "NodeName=n1 CPUTot=2 RealMemory=lots")
    with pytest.raises(AdminError, match="lists no partition"):
        cc.cluster_from_scontrol("", LOCAL_NODES)


# --------------------------------------------------------------------------- the plugin


@pytest.mark.parametrize(
    ("threads", "resources"),
    [
        (8, {"mem_mb": 16000, "runtime": 720}),
        (64, {"nodes": 2, "gres": "gpu:8", "mem_mb": 256000, "runtime": 2880}),
        (4, {"gres": "gpu:a100:2", "runtime": 60}),
        (2, {"gpu": 1, "mem_mb": 4000}),
        (2, {"gpu": 2, "gpu_model": "a100"}),
        (1, {"cpus_per_task": 6, "mem_mb_per_cpu": 1000}),
        (4, {"cpus_per_task": -1, "mem_mb": 1000}),
    ],
)
def test_requests_match_the_plugins_sbatch_line(threads: int, resources: dict[str, Any]) -> None:
    """What request_of reads is what the SLURM executor plugin puts on sbatch's line."""
    line = sbatch_line(mock_job("r", threads, dict(resources)))
    req = cc.request_of(threads, resources)

    def flag(pattern: str) -> str | None:
        m = re.search(pattern, line)
        return m.group(1) if m else None

    assert req.cpus == int(flag(r"--cpus-per-task=(\d+)") or 1)  # SLURM: 1 per task
    assert req.nodes == int(flag(r"--nodes=(\d+)") or 1)
    assert req.runtime == (int(flag(r" -t (\d+)")) if flag(r" -t (\d+)") else None)
    mem, per_cpu = flag(r"--mem (\d+)"), flag(r"--mem-per-cpu (\d+)")
    assert req.mem_mb == (int(mem) if mem else int(per_cpu) * req.cpus if per_cpu else None)
    gres, gpus = flag(r"--gres=(\S+)"), flag(r"--gpus=(\S+)")
    if gres:  # per node
        assert (req.gpu_model, req.gpus) == (cc.parse_gpus(gres)[0][0], cc.parse_gpus(gres)[0][1])
    elif gpus:  # per job
        model, _, count = gpus.rpartition(":")
        assert (req.gpu_model or "", req.gpus * req.nodes) == (model, int(count))
    else:
        assert req.gpus == 0
