#!/usr/bin/env bash
# Run by Snakemake inside the new envs/admin.yaml environment (--sdm conda).
# fairseq-fixed must be built against the torch of this environment and without its own
# requirements (its torchaudio requirement would pull in another torch); the pin is the
# one of envs/requirements-fairseq.txt. Then this workflow's own package.
set -euo pipefail
python -m pip install --no-build-isolation --no-deps "fairseq-fixed==0.12.3.1"
python -c "import fairseq, torch"
bash "${ADMIN_WORKFLOW_ROOT:?is set by the workflow (workflow/rules/common.smk)}/envs/install-admin.sh"
