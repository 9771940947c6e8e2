"""Snakemake's command line as the SLURM tests run it: the real Snakemake and SLURM
executor plugin, with the plugin's status checks at most ``CHECK_EVERY_S`` apart.

snakemake-executor-plugin-slurm (2.8, ``Executor.check_active_jobs``) waits 10 s
longer before each next status check whenever a check finds no job finished, up to
180 s, so that a large cluster's controller is not asked too often. The local test
cluster's jobs last seconds, so there Snakemake noticed a finished job up to tens of
seconds late: a two-rule workflow took 32-33 s with the plugin as it is and 20-21 s
with its interval kept at 2 s (`tests/test_slurm_cluster.py::
test_two_rule_workflow_goes_through_sbatch`, twice each). Everything else runs as a
user's ``snakemake --profile slurm`` does: sbatch, squeue and the plugin's reading
of them; jobs inside SLURM start Snakemake the plugin's own way.

Run as ``python -P tests/slurm_snakemake.py ARGS...`` (``-P``: tests/ itself stays
off ``sys.path``).
"""

from __future__ import annotations

import sys

from snakemake.cli import main
from snakemake_executor_plugin_slurm import Executor
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor

CHECK_EVERY_S = 2

_interval = RemoteExecutor.next_seconds_between_status_checks


def _set_capped(executor: RemoteExecutor, seconds: float) -> None:
    _interval.fset(executor, min(seconds, CHECK_EVERY_S))


# A property on the plugin's class only: the base class and other executors stay as
# they are. Fails loudly (AttributeError) if a new interface drops the property.
Executor.next_seconds_between_status_checks = _interval.setter(_set_capped)

if __name__ == "__main__":
    sys.exit(main())
