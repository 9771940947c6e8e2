# Admin's profiling run (one GPU, Admin only) and training (the preset's GPUs and nodes).
#
# Checkpoints live in <run>/checkpoints/ and are never a declared output: Snakemake
# deletes the declared outputs of a failed or interrupted job, and training resumes from
# checkpoint_last.pt when the workflow runs again.


rule profile:
    input:
        data=f"{RESOURCES}/{{dataset}}/data-bin",
    output:
        profile=f"{RUN}/profile.json",
    log:
        f"{RUN_LOGS}/profile.log",
    benchmark:
        f"{RUN_BENCHMARKS}/profile.tsv"
    wildcard_constraints:
        variant=alternation(v for v in VARIANTS if needs_profile(v)),
    conda:
        "../../envs/admin.yaml"
    threads: res("profile", "cpus")
    resources:
        mem_mb=res("profile", "mem_mb"),
        runtime=res("profile", "runtime"),
        gpu=res("profile", "gpu"),
        nodes=res("profile", "nodes"),
    params:
        py=PYTHON,
        hparams=profile_hparams,
    shell:
        "OMP_NUM_THREADS={threads} {params.py:q} -m admin.profile_run"
        " --data {input.data:q} --variant {wildcards.variant:q}"
        " --hparams {params.hparams:q} --out {output.profile:q}"
        " > {log:q} 2>&1"


rule train:
    input:
        data=f"{RESOURCES}/{{dataset}}/data-bin",
        profile=profile_input,
    output:
        log=f"{RUN}/train.log",
        status=f"{RUN}/status.json",
    log:
        f"{RUN_LOGS}/train.log",
    benchmark:
        f"{RUN_BENCHMARKS}/train.tsv"
    conda:
        "../../envs/admin.yaml"
    threads: res("train", "cpus")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        gpu=res("train", "gpu"),
        gpus_per_node=res("train", "gpus"),
        nodes=res("train", "nodes"),
    params:
        py=PYTHON,
        hparams=train_hparams,
        profile=lambda wildcards, input: (
            ["--profile", *input.profile] if input.profile else []
        ),
        save_dir=lambda wildcards, output: str(
            Path(output.status).parent / "checkpoints"
        ),
    shell:
        "OMP_NUM_THREADS={threads} {params.py:q} -m admin.train"
        " --data {input.data:q} --variant {wildcards.variant:q} {params.profile:q}"
        " --hparams {params.hparams:q} --save-dir {params.save_dir:q}"
        " --log {output.log:q} --status {output.status:q}"
        " --nodes {resources.nodes} --gpus-per-node {resources.gpus_per_node}"
        " > {log:q} 2>&1"
