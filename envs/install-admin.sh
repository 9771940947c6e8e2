#!/usr/bin/env bash
# Installs this workflow's Python package (admin: the fairseq plugin and the pipeline
# steps) from the workflow's own folder into the active environment, without its
# dependencies (the environment file pins them). The post-deploy scripts of the rules'
# conda environments run it (--sdm conda); the workflow tells them its folder through
# ADMIN_WORKFLOW_ROOT (workflow/rules/common.smk).
set -euo pipefail
root=${ADMIN_WORKFLOW_ROOT:-}
if [ -z "$root" ] || [ ! -f "$root/pyproject.toml" ] || [ ! -d "$root/admin" ]; then
    echo "install-admin.sh: ADMIN_WORKFLOW_ROOT='$root' is not this workflow's folder (with" \
        "pyproject.toml and admin/); install the admin-nmt package into this environment" \
        "yourself: pip install --no-deps <the workflow's repository>" >&2
    exit 1
fi
python -m pip install --no-build-isolation --no-deps "$root"
python -c "import admin, admin.common.variants"
