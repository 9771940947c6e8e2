"""Jobs a SLURM cluster can never run, found before anything is submitted.

SLURM's default ``EnforcePartLimits=NO`` accepts a job that asks for more CPUs per task
than any node of its partition has, or more time than the partition's MaxTime, and
leaves it PENDING for ever (reason ``PartitionConfig`` / ``PartitionTimeLimit``);
Snakemake then waits without a word.  Too much memory or too many GPUs per node are
refused at submit time with messages that do not name the rule.  This module reads
the partitions' limits (``scontrol show partition`` / ``show node``), works out what
the SLURM executor plugin (snakemake-executor-plugin-slurm 2.8) would ask sbatch for
each job, and names every job that no node of its partition could ever take.

It flags only what can never run: where SLURM is free to spread a job's tasks over
nodes it assumes that it does.  The Snakefile's ``onstart`` handler calls
:func:`check_jobs` when the workflow runs with the SLURM executor.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from admin.common.errors import AdminError

# MaxTime words for "no limit": scontrol prints UNLIMITED, sinfo infinite.
UNLIMITED = {"unlimited", "infinite"}
ADVICE = (
    "Lower the rule's request in the config (resources.<rule>, or "
    "experiments.<dataset>.resources.<rule>; config/README.md, section Resources), "
    "override it in your profile (set-threads / set-resources), or send the rule to a "
    "partition whose nodes are big enough (set-resources: <rule>: slurm_partition)."
)


# --------------------------------------------------------------------------- the cluster


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    mem_mb: int
    gpus: tuple[tuple[str | None, int], ...] = ()  # (type or None, count) per GRES entry

    def gpu_count(self, model: str | None = None) -> int:
        """This node's GPUs, or those of one model (a typed request needs typed GRES)."""
        return sum(n for kind, n in self.gpus if model is None or kind == model)


@dataclass(frozen=True)
class Partition:
    name: str
    nodes: tuple[Node, ...]
    max_time: int | None = None  # minutes; None = no limit
    max_nodes: int | None = None
    max_cpus_per_node: int | None = None
    max_mem_per_node: int | None = None  # MB
    default: bool = False

    def cpus(self, node: Node) -> int:
        return min(node.cpus, self.max_cpus_per_node or node.cpus)

    def mem_mb(self, node: Node) -> int:
        return min(node.mem_mb, self.max_mem_per_node or node.mem_mb)


@dataclass(frozen=True)
class Cluster:
    partitions: tuple[Partition, ...]

    def get(self, name: str) -> Partition | None:
        return next((p for p in self.partitions if p.name == name), None)

    @property
    def default(self) -> Partition | None:
        return next((p for p in self.partitions if p.default), None)


def parse_time(text: str) -> int | None:
    """A SLURM time limit in whole minutes (seconds dropped), None for no limit.

    The formats of sbatch -t, scontrol and sinfo: ``M``, ``M:S``, ``H:M:S``, ``D-H``,
    ``D-H:M``, ``D-H:M:S``, ``UNLIMITED`` / ``infinite``.
    """
    value = text.strip()
    if value.lower() in UNLIMITED:
        return None
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", value)
    if not m:
        raise AdminError(f"SLURM time limit {text!r}: expected [D-]H:M:S, M:S, M or UNLIMITED")
    days, first, second, third = (int(g) if g else 0 for g in m.groups())
    if m.group(1) is not None:  # D-H[:M[:S]]
        hours, minutes, seconds = first, second, third
    elif m.group(4) is not None:  # H:M:S
        hours, minutes, seconds = first, second, third
    else:  # M[:S]
        hours, minutes, seconds = 0, first, second
    return (days * 24 + hours) * 60 + minutes + seconds // 60


def parse_gpus(gres: str) -> tuple[tuple[str | None, int], ...]:
    """The GPUs of a node's GRES: ``gpu:2``, ``gpu:a100:8``, ``gpu:2(S:0-1)``,
    ``gpu:a100:4(S:0),gpu:v100:2(S:1),shard:8``, ``(null)``; non-GPU GRES are left out."""
    text = re.sub(r"\([^)]*\)", "", gres.strip())  # socket bindings, and (null) itself
    found: list[tuple[str | None, int]] = []
    for item in filter(None, text.split(",")):
        name, *rest = item.split(":")
        if name != "gpu":
            continue
        count = 1
        if rest and re.fullmatch(r"\d+[KMGT]?", rest[-1]):
            count = _gres_count(rest.pop())
        kinds = [p for p in rest if p != "no_consume"]
        found.append((kinds[0] if kinds else None, count))
    return tuple(found)


def _gres_count(text: str) -> int:
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    return int(text[:-1]) * scale[text[-1]] if text[-1] in scale else int(text)


def parse_records(text: str) -> list[dict[str, str]]:
    """``scontrol show ... --oneliner`` output: one dict of Key=Value per line.  A word
    without ``Key=`` continues the value before it (``OS=Linux 6.1 #1 SMP``)."""
    records = []
    for line in text.splitlines():
        record: dict[str, str] = {}
        key = None
        for word in line.split():
            m = re.fullmatch(r"([A-Za-z][A-Za-z0-9_]*)=(.*)", word)
            if m:
                key, record[m.group(1)] = m.group(1), m.group(2)
            elif key is not None:
                record[key] += " " + word
        if record:
            records.append(record)
    return records


def cluster_from_scontrol(partitions: str, nodes: str) -> Cluster:
    """The cluster from ``scontrol show partition --oneliner --all`` and
    ``scontrol show node --oneliner --all``."""
    members: dict[str, list[Node]] = {}
    for rec in parse_records(nodes):
        name = _field(rec, "NodeName", "node")
        node = Node(
            name=name,
            # CPUEfctv (22.05+) leaves out cores reserved for the system
            cpus=_int(rec, "CPUEfctv" if "CPUEfctv" in rec else "CPUTot", f"node {name}"),
            mem_mb=_int(rec, "RealMemory", f"node {name}"),
            gpus=parse_gpus(rec.get("Gres", "(null)")),
        )
        for part in filter(None, rec.get("Partitions", "").split(",")):
            members.setdefault(part, []).append(node)
    parts = []
    for rec in parse_records(partitions):
        name = _field(rec, "PartitionName", "partition")
        where = f"partition {name}"
        parts.append(
            Partition(
                name=name,
                nodes=tuple(members.get(name, [])),
                max_time=parse_time(rec.get("MaxTime", "UNLIMITED")),
                max_nodes=_limit(rec, "MaxNodes", where),
                max_cpus_per_node=_limit(rec, "MaxCPUsPerNode", where),
                max_mem_per_node=_limit(rec, "MaxMemPerNode", where),
                default=rec.get("Default") == "YES",
            )
        )
    if not parts:
        raise AdminError("scontrol show partition lists no partition")
    return Cluster(tuple(parts))


def _field(rec: Mapping[str, str], key: str, what: str) -> str:
    if not rec.get(key):
        raise AdminError(f"scontrol: a {what} record without {key}: {dict(rec)}")
    return rec[key]


def _int(rec: Mapping[str, str], key: str, where: str) -> int:
    try:
        return int(rec[key])
    except (KeyError, ValueError):
        raise AdminError(f"scontrol: {where} has {key}={rec.get(key)!r}, not a number") from None


def _limit(rec: Mapping[str, str], key: str, where: str) -> int | None:
    value = rec.get(key, "UNLIMITED")
    return None if value.lower() in UNLIMITED else _int(rec, key, where)


def query_cluster() -> Cluster:
    """The partitions and nodes of the cluster this machine submits to."""
    from admin.common.launch import scontrol  # one scontrol runner, with its errors

    return cluster_from_scontrol(
        scontrol("show", "partition", "--oneliner", "--all"),
        scontrol("show", "node", "--oneliner", "--all"),
    )


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Request:
    """What sbatch is asked for, per node (the plugin's --cpus-per-task, --mem,
    --gres / --gpus, --nodes, -t, -p)."""

    partition: str | None
    nodes: int = 1
    cpus: int = 1
    mem_mb: int | None = None
    gpus: int = 0
    gpu_model: str | None = None
    runtime: int | None = None  # minutes

    def __str__(self) -> str:
        per_node = [_plural(self.cpus, "CPU")]
        if self.mem_mb is not None:
            per_node.append(f"{self.mem_mb} MB")
        if self.gpus:
            per_node.append(_plural(self.gpus, _gpu_word(self.gpu_model)))
        text = f"{_plural(self.nodes, 'node')} x ({', '.join(per_node)})"
        return text + (f", {self.runtime} min" if self.runtime is not None else "")


@dataclass(frozen=True)
class Job:
    rule: str  # or a group job's name
    wildcards: tuple[tuple[str, str], ...]
    request: Request
    what: str = "rule"  # "group job": a run's steps in one SLURM job (job_requests)


def request_of(threads: int, resources: Mapping[str, Any]) -> Request:
    """What the SLURM executor plugin submits for a job with these threads and
    evaluated resources (snakemake-executor-plugin-slurm 2.8, submit_string.py)."""
    nodes = int(resources.get("nodes") or 1)
    gres_gpus = parse_gpus(str(resources.get("gres") or ""))
    per_node = sum(n for _, n in gres_gpus)  # --gres is per node
    model = next((kind for kind, _ in gres_gpus if kind), None)
    gpu_model = resources.get("gpu_model") or None
    gpu = resources.get("gpu")  # --gpus is per job; with a model it defaults to 1
    total = int(gpu) if gpu not in (None, "") else (1 if gpu_model else 0)
    if total:
        per_node = max(per_node, math.ceil(total / nodes))
        model = model or gpu_model
    cpus = int(threads)
    if resources.get("cpus_per_task"):  # below 0: no --cpus-per-task, SLURM's 1
        cpus = max(1, int(resources["cpus_per_task"]))
    elif per_node and int(resources.get("cpus_per_gpu") or 0) > 0:
        cpus = int(resources["cpus_per_gpu"]) * per_node
    if resources.get("mpi") and int(resources.get("tasks_per_node") or 0) > 1:
        cpus *= int(resources["tasks_per_node"])  # tasks pinned per node
    mem = resources.get("mem_mb")
    if resources.get("mem_mb_per_cpu"):
        mem = int(resources["mem_mb_per_cpu"]) * cpus
    runtime = resources.get("runtime")
    return Request(
        partition=str(resources.get("slurm_partition") or "") or None,
        nodes=nodes,
        cpus=cpus,
        mem_mb=int(mem) if mem else None,
        gpus=per_node,
        gpu_model=model,
        runtime=_minutes(runtime) if runtime not in (None, "", 0) else None,
    )


def _minutes(value: Any) -> int | None:
    if isinstance(value, int | float):
        return math.ceil(value)
    return parse_time(str(value))


class SnakemakeJob(Protocol):
    """What :func:`job_of` reads of a Snakemake job (snakemake 9 ``Job``, or a
    ``GroupJob``, which has a ``name`` instead of a rule and wildcards)."""

    rule: Any
    wildcards_dict: Mapping[str, Any]
    name: str
    threads: int
    resources: Any

    def is_group(self) -> bool: ...


def job_of(job: SnakemakeJob) -> Job:
    """The request SLURM gets for a job: a group job's is its members' combined
    (Snakemake's: the largest CPUs, memory and GPUs, the summed time limits)."""
    res = job.resources
    resources = {name: res.get(name) for name in res.keys()}
    request = request_of(job.threads, resources)
    if job.is_group():
        return Job(job.name, (), request, what="group job")
    wildcards = tuple((k, str(v)) for k, v in job.wildcards_dict.items())
    return Job(job.rule.name, wildcards, request)


# --------------------------------------------------------------------------- the check


def shortfalls(req: Request, part: Partition) -> list[str]:
    """Why no ``req.nodes`` nodes of ``part`` could ever run ``req``; empty if some can."""
    why = []
    if req.nodes > len(part.nodes) or (part.max_nodes and req.nodes > part.max_nodes):
        why.append("too many nodes")
    if req.runtime is not None and part.max_time is not None and req.runtime > part.max_time:
        why.append("too long")
    need = min(req.nodes, len(part.nodes))
    checks = {
        "too many CPUs": lambda n: part.cpus(n) >= req.cpus,
        "too much memory": lambda n: req.mem_mb is None or part.mem_mb(n) >= req.mem_mb,
        "too many GPUs": lambda n: n.gpu_count(req.gpu_model) >= req.gpus,
    }
    why += [what for what, ok in checks.items() if sum(map(ok, part.nodes)) < need]
    if not why and sum(all(ok(n) for ok in checks.values()) for n in part.nodes) < need:
        why.append(f"no {_plural(need, 'node')} with all of it at once")
    return why


def describe(part: Partition, nodes: int = 1, gpu_model: str | None = None) -> str:
    """The partition's limits for a job of ``nodes`` nodes (per node: the ``nodes``-th
    largest), e.g. ``partition 'local' has 2 nodes of at most 2 CPUs, 12052 MB, 2 GPUs,
    no time limit``."""

    def nth(values: Iterable[int]) -> int:
        ranked = sorted(values, reverse=True)
        return ranked[min(nodes, len(ranked)) - 1] if ranked else 0

    limits = (
        f"{_plural(nth(part.cpus(n) for n in part.nodes), 'CPU')}, "
        f"{nth(part.mem_mb(n) for n in part.nodes)} MB, "
        f"{_plural(nth(n.gpu_count(gpu_model) for n in part.nodes), _gpu_word(gpu_model))}"
    )
    text = f"partition '{part.name}' has {_plural(len(part.nodes), 'node')}"
    if 1 < nodes < len(part.nodes):
        text += f", the {nodes} largest of at most {limits}"
    else:
        text += f" of at most {limits}"
    if part.max_nodes is not None and part.max_nodes < len(part.nodes):
        text += f", at most {_plural(part.max_nodes, 'node')} per job"
    if part.max_time is None:
        return text + ", no time limit"
    return text + f", a time limit of {part.max_time} min"


def problems(jobs: Iterable[Job], cluster: Cluster, auto_partition: bool = False) -> list[str]:
    """One line per group of jobs (same rule, same request) that can never run.

    A job goes to its ``slurm_partition``, else to the cluster's default partition; with
    ``auto_partition`` (the plugin's partition config picks one) to any that fits.
    """
    groups: dict[tuple[str, str, Request], list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.what, job.rule, job.request), []).append(job)
    lines = []
    for (what, rule, req), members in groups.items():
        why = _why(req, cluster, auto_partition)
        if why:
            lines.append(f"{_who(what, rule, members)} asks for {req}; {why}")
    return lines


def _why(req: Request, cluster: Cluster, auto_partition: bool) -> str | None:
    if req.partition is None and auto_partition:
        reasons = {p.name: shortfalls(req, p) for p in cluster.partitions}
        if all(reasons.values()):
            return "no partition fits it: " + "; ".join(
                f"{describe(p, req.nodes, req.gpu_model)} ({', '.join(reasons[p.name])})"
                for p in cluster.partitions
            )
        return None
    part = cluster.get(req.partition) if req.partition else cluster.default
    if part is None:
        names = ", ".join(p.name for p in cluster.partitions)
        if req.partition:
            return f"the cluster has no partition '{req.partition}' (it has: {names})"
        return f"it names no partition and the cluster has no default one (it has: {names})"
    reasons = shortfalls(req, part)
    if not reasons:
        return None
    return f"{describe(part, req.nodes, req.gpu_model)}: {', '.join(reasons)}"


def _who(what: str, rule: str, members: Sequence[Job]) -> str:
    first = ", ".join(f"{k}={v}" for k, v in members[0].wildcards)
    if len(members) == 1:
        return f"{what} {rule}" + (f" ({first})" if first else "")
    return f"{len(members)} jobs of {what} {rule} (the first: {first})"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _gpu_word(model: str | None) -> str:
    return f"{model} GPU" if model else "GPU"


def report(lines: Sequence[str]) -> str:
    """The error message for :func:`problems`' lines."""
    body = "\n".join(f"  - {line}" for line in lines)
    return f"SLURM can never run these jobs, so nothing was submitted:\n{body}\n{ADVICE}"


def check_jobs(
    jobs: Iterable[SnakemakeJob], cluster: Cluster | None = None, auto_partition: bool = False
) -> None:
    """Raise :class:`AdminError` naming every job SLURM could never run (Snakemake jobs,
    the local ones already left out); the cluster is queried unless given."""
    checked = [job_of(job) for job in jobs]
    if not checked:
        return
    lines = problems(checked, cluster or query_cluster(), auto_partition)
    if lines:
        raise AdminError(report(lines))
