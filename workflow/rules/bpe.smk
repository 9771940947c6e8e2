# Joint BPE, learned on the training data of each dataset (once per dataset).


rule bpe:
    input:
        prepared=f"{RESOURCES}/{{dataset}}/prepared",
    output:
        bpe=directory(f"{RESOURCES}/{{dataset}}/bpe"),
    log:
        f"{LOGS}/{{dataset}}/bpe.log",
    benchmark:
        f"{BENCHMARKS}/{{dataset}}/bpe.tsv"
    conda:
        "../../envs/data.yaml"
    threads: res("bpe", "cpus")
    resources:
        mem_mb=res("bpe", "mem_mb"),
        runtime=res("bpe", "runtime"),
    params:
        src=lambda wildcards: languages(wildcards.dataset)[0],
        tgt=lambda wildcards: languages(wildcards.dataset)[1],
        options=bpe_options,
    shell:
        "python -m admin.data.bpe --src {params.src:q} --tgt {params.tgt:q}"
        " --in {input.prepared:q} --out {output.bpe:q} {params.options:q} --workers {threads}"
        " > {log:q} 2>&1"
