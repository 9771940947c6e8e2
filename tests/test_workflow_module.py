"""The workflow used by another one through Snakemake's ``module`` directive, as
``snakedeploy deploy-workflow`` sets it up (here from a local checkout): a deploying
workflow in a temporary folder with its own copy of ``config/``, one key changed; its dry
run plans the demo, and a real run trains one tiny run through every step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from admin import paper_shape
from tests.conftest import REPO
from tests.workflow_support import SNAKEMAKE, parse_dry_run

pytestmark = pytest.mark.slow

DEPLOYED_SNAKEFILE = f"""configfile: "config/config.yaml"


# declare the Admin workflow (a local checkout) as a module
module admin_nmt:
    snakefile:
        "{REPO / "workflow" / "Snakefile"}"
    config:
        config


# use all rules of the Admin workflow
use rule * from admin_nmt


# the deploying workflow's own rule: where the module's conda environments get the
# admin package from
rule module_root:
    output:
        "module_root.txt",
    shell:
        'echo "$ADMIN_WORKFLOW_ROOT" > {{output}}'
"""

TINY = {
    "variants": ["postln"],
    "depths": ["1-1"],
    "experiments": {"demo": {
        "data": {"corpus": {"seed": 1, "train": 600, "valid": 30, "test": 30},
                 "bpe_merges": 200},
        "hparams": {"encoder_embed_dim": 16, "decoder_embed_dim": 16,
                    "encoder_ffn_embed_dim": 32, "decoder_ffn_embed_dim": 32,
                    "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                    "max_tokens": 2000, "max_epoch": 1, "warmup_updates": 4},
        "generate": {"beam": 1, "batch_size": 30},
    }},
    # one epoch of a few updates: not judged on training
    "divergence": {"unigram_margin": None, "bigram_margin": None},
}  # fmt: skip


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("deployed")
    (dest / "workflow").mkdir()
    (dest / "workflow" / "Snakefile").write_text(DEPLOYED_SNAKEFILE)
    shutil.copytree(REPO / "config", dest / "config")  # as snakedeploy copies it
    config = yaml.safe_load((dest / "config" / "config.yaml").read_text())
    config["experiments"]["demo"]["matrix"]["seeds"] = [7]  # the one key changed
    (dest / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (dest / "config" / "tiny.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    return dest


def _snakemake(dest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    env.pop("ADMIN_WORKFLOW_ROOT", None)
    return subprocess.run(
        [SNAKEMAKE, *args], cwd=dest, env=env, capture_output=True, text=True, timeout=900
    )


def test_the_deployed_workflow_plans_the_demo(deployed: Path):
    proc = _snakemake(deployed, "-n", "-p")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = parse_dry_run(proc.stdout + proc.stderr)
    trains = {(j["wildcards"]["variant"], j["wildcards"]["depth"], j["wildcards"]["seed"])
              for j in jobs if j["rule"] == "train"}  # fmt: skip
    # the demo's matrix (its depths from the deployed config) with the deploying workflow's seed
    depths = paper_shape.demo_depths(deployed / "config" / "config.yaml")
    assert trains == {(v, d, "7") for v in ("postln", "preln", "admin") for d in depths}
    assert {j["rule"] for j in jobs} >= {"demo_corpus", "recipe", "profile", "average",
                                         "evaluate", "table", "curves", "bleu_plot"}  # fmt: skip


def test_the_deployed_workflow_trains_a_tiny_run(deployed: Path):
    proc = _snakemake(deployed, "all", "module_root.txt", "--cores", "2", "--configfile",
                      "config/config.yaml", "config/tiny.yaml")  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    run = deployed / "results" / "demo" / "postln" / "1-1" / "seed7"
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "completed" and status["epochs"] == 1
    scores = json.loads((run / "scores.json").read_text())
    assert scores["status"] == "completed" and scores["num_sentences"] == 30
    table = json.loads((deployed / "results" / "demo" / "table.json").read_text())
    assert table["cells"]["postln"]["1-1"]["seeds"] == {"7": scores["bleu_tokenized"]}
    # the module's folder (where its environments install the package from)
    assert (deployed / "module_root.txt").read_text().strip() == str(REPO)
