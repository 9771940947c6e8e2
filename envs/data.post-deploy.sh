#!/usr/bin/env bash
# Run by Snakemake inside the new envs/data.yaml environment (--sdm conda): this
# workflow's own package, whose data steps the rules run.
set -euo pipefail
bash "${ADMIN_WORKFLOW_ROOT:?is set by the workflow (workflow/rules/common.smk)}/envs/install-admin.sh"
