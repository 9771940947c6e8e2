# Checkpoint averaging, then fairseq-generate and the scores of each run.


rule average:
    input:
        status=f"{RUN}/status.json",
    output:
        average=f"{RUN}/average.json",
    log:
        f"{RUN_LOGS}/average.log",
    benchmark:
        f"{RUN_BENCHMARKS}/average.tsv"
    # a run's steps share its priority (the longest runs first)
    priority: depth_priority
    # in the run's SLURM job, after its training (common.smk)
    group:
        run_group("average")
    conda:
        "../../envs/admin.yaml"
    threads: res("average", "cpus")
    resources:
        mem_mb=res("average", "mem_mb"),
        runtime=res("average", "runtime"),
    params:
        checkpoints=lambda wildcards, input: str(
            Path(input.status).parent / "checkpoints"
        ),
        options=average_options,
    shell:
        "python -m admin.average --checkpoints {params.checkpoints:q}"
        " --status {input.status:q} {params.options:q} --out {output.average:q}"
        " > {log:q} 2>&1"


rule evaluate:
    input:
        data=f"{RESOURCES}/{{dataset}}/data-bin",
        average=f"{RUN}/average.json",
        raw=raw_text,
    output:
        generate=f"{RUN}/generate.txt",
        scores=f"{RUN}/scores.json",
    log:
        f"{RUN_LOGS}/evaluate.log",
    benchmark:
        f"{RUN_BENCHMARKS}/evaluate.tsv"
    # a run's steps share its priority (the longest runs first)
    priority: depth_priority
    # A GPU job lost to a node failure or a preemption runs again.
    retries: 2
    group:
        run_group("evaluate")
    conda:
        "../../envs/admin.yaml"
    threads: res("evaluate", "cpus")
    resources:
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
        gpu=res("evaluate", "gpu"),
    params:
        hparams=generate_hparams,
        out_dir=lambda wildcards, output: str(Path(output.scores).parent),
        refs=detok_options,
        options=scoring_options,
        keep=untracked(keep_checkpoints),
        device=device("evaluate"),
    shell:
        "OMP_NUM_THREADS={threads} python -m admin.evaluate"
        " --data-bin {input.data:q} --average {input.average:q}"
        " --hparams {params.hparams:q} --device {params.device:q} {params.refs:q}"
        " {params.options:q} --keep-checkpoints {params.keep:q}"
        " --out-dir {params.out_dir:q} --scores {output.scores:q}"
        " > {log:q} 2>&1"
