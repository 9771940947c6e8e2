# The paper-style table and the plots of each dataset, flagged for `snakemake --report`.


rule table:
    input:
        scores=run_files("scores.json"),
        status=run_files("status.json"),
    output:
        md=f"{RESULTS}/{{dataset}}/table.md",
        csv=report(
            f"{RESULTS}/{{dataset}}/table.csv",
            caption="../report/table.rst",
            category="Tables",
            labels={"dataset": "{dataset}", "file": "table"},
        ),
        json=f"{RESULTS}/{{dataset}}/table.json",
    log:
        f"{LOGS}/{{dataset}}/table.log",
    conda:
        "../../envs/admin.yaml"
    threads: res("table", "cpus")
    resources:
        mem_mb=res("table", "mem_mb"),
        runtime=res("table", "runtime"),
    params:
        runs=lambda wildcards, input: run_folders(input.scores),
        rehearsal=rehearsal_flag,
    shell:
        "python -m admin.table --dataset {wildcards.dataset:q} {params.runs:q}"
        " {params.rehearsal} --md {output.md:q} --csv {output.csv:q} --json {output.json:q}"
        " > {log:q} 2>&1"


rule curves:
    input:
        logs=depth_run_files("train.log"),
        status=depth_run_files("status.json"),
    output:
        png=report(
            f"{RESULTS}/{{dataset}}/curves_{{depth}}.png",
            caption="../report/curves.rst",
            category="Training curves",
            labels={"dataset": "{dataset}", "depth": "{depth}"},
        ),
    log:
        f"{LOGS}/{{dataset}}/curves_{{depth}}.log",
    conda:
        "../../envs/admin.yaml"
    threads: res("plots", "cpus")
    resources:
        mem_mb=res("plots", "mem_mb"),
        runtime=res("plots", "runtime"),
    params:
        runs=lambda wildcards, input: run_folders(input.logs),
        rehearsal=rehearsal_flag,
    shell:
        "python -m admin.plots curves --dataset {wildcards.dataset:q} {params.runs:q}"
        " {params.rehearsal}"
        " --out {output.png:q}"
        " > {log:q} 2>&1"


rule bleu_plot:
    input:
        scores=run_files("scores.json"),
    output:
        png=report(
            f"{RESULTS}/{{dataset}}/bleu_vs_depth.png",
            caption="../report/bleu_vs_depth.rst",
            category="BLEU against depth",
            labels={"dataset": "{dataset}", "file": "bleu_vs_depth"},
        ),
    log:
        f"{LOGS}/{{dataset}}/bleu_vs_depth.log",
    conda:
        "../../envs/admin.yaml"
    threads: res("plots", "cpus")
    resources:
        mem_mb=res("plots", "mem_mb"),
        runtime=res("plots", "runtime"),
    params:
        runs=lambda wildcards, input: run_folders(input.scores),
        rehearsal=rehearsal_flag,
    shell:
        "python -m admin.plots bleu --dataset {wildcards.dataset:q} {params.runs:q}"
        " {params.rehearsal}"
        " --out {output.png:q}"
        " > {log:q} 2>&1"
