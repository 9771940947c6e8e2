# Each run's recipe, Admin's profiling run (one GPU, Admin only) and training (the
# preset's GPUs and nodes).
#
# A run is a function of its recipe: recipe.json holds everything that changes what is
# trained (admin.recipe), so that a changed recipe reruns exactly its runs.  When they
# stop and how they are run travel separately: stop conditions are tracked (raising
# max_epoch continues a run), runtime options are not (logging changes rerun nothing).
#
# Checkpoints live in <run>/checkpoints/ and are never a declared output: Snakemake
# deletes the declared outputs of a failed or interrupted job, and training resumes from
# checkpoint_last.pt when the workflow runs again.


rule recipe:
    input:
        data=f"{RESOURCES}/{{dataset}}/data-bin",
    output:
        recipe=f"{RUN}/recipe.json",
    log:
        f"{RUN_LOGS}/recipe.log",
    conda:
        "../../envs/admin.yaml"
    params:
        spec=recipe_spec,
    shell:
        "python -m admin.recipe --data-bin {input.data:q} --spec {params.spec:q}"
        " --out {output.recipe:q}"
        " > {log:q} 2>&1"


rule profile:
    input:
        data=f"{RESOURCES}/{{dataset}}/data-bin",
        recipe=f"{RUN}/recipe.json",
    output:
        profile=f"{RUN}/profile.json",
    log:
        step=f"{RUN_LOGS}/profile.log",
        fairseq=f"{RUN_LOGS}/profile.fairseq.log",
    benchmark:
        f"{RUN_BENCHMARKS}/profile.tsv"
    wildcard_constraints:
        variant=alternation(v for v in VARIANTS if needs_profile(v)),
    # the longest runs start first (admin.common.job_requests.depth_priority)
    priority: depth_priority
    conda:
        "../../envs/admin.yaml"
    threads: res("profile", "cpus")
    resources:
        mem_mb=res("profile", "mem_mb"),
        runtime=res("profile", "runtime"),
        gpu=res("profile", "gpu"),
    params:
        runtime=untracked(runtime_options),
        device=device("profile"),
    shell:
        "OMP_NUM_THREADS={threads} python -m admin.profile_run"
        " --data-bin {input.data:q} --recipe {input.recipe:q}"
        " --runtime {params.runtime:q} --device {params.device:q}"
        " --out {output.profile:q} --log {log.fairseq:q}"
        " > {log.step:q} 2>&1"


rule train:
    input:
        data=f"{RESOURCES}/{{dataset}}/data-bin",
        recipe=f"{RUN}/recipe.json",
        profile=profile_input,
    output:
        log=f"{RUN}/train.log",
        status=f"{RUN}/status.json",
    log:
        f"{RUN_LOGS}/train.log",
    benchmark:
        f"{RUN_BENCHMARKS}/train.tsv"
    priority: depth_priority
    # A failed or timed-out training is resubmitted and resumes from its checkpoint.
    retries: 2
    # On SLURM a run's train, average and evaluate steps are one job (common.smk).
    group:
        run_group("train")
    conda:
        "../../envs/admin.yaml"
    threads: res("train", "cpus")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        # one node: `gpu` (sbatch --gpus, or a local --resources gpu=N cap); several
        # nodes: per node as `gres` (never `tasks`: see slurm/config.yaml)
        gpu=train_gpu_request("gpu"),
        gres=train_gpu_request("gres"),
        gpus_per_node=res("train", "gpus"),
        nodes=res("train", "nodes"),
        cpu_procs=res("train", "cpu_procs"),
    params:
        stop=stop_conditions,
        window=kept_window_options,
        divergence=divergence_settings,
        runtime=untracked(runtime_options),
        profile=profile_options,
        run_dir=lambda wildcards, output: str(Path(output.status).parent),
        device=device("train"),
        procs=lambda wildcards, resources: (
            resources.gpus_per_node or resources.cpu_procs
        ),
    shell:
        # threads = the job's CPUs per node; each rank takes its share (admin.rank_entry)
        "python -m admin.train"
        " --data-bin {input.data:q} --run-dir {params.run_dir:q}"
        " --recipe {input.recipe:q} {params.profile:q} --stop {params.stop:q}"
        " --runtime {params.runtime:q} {params.window:q}"
        " --divergence {params.divergence:q}"
        " --device {params.device:q} --nproc-per-node {params.procs:q}"
        " --nnodes {resources.nodes:q} --cpus-per-node {threads}"
        " --log {output.log:q} --status {output.status:q}"
        " > {log:q} 2>&1"
