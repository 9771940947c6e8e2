# fairseq data-bin with a joined dictionary (once per dataset, shared by every run).


rule binarize:
    input:
        bpe=f"{RESOURCES}/{{dataset}}/bpe",
    output:
        data=directory(f"{RESOURCES}/{{dataset}}/data-bin"),
    log:
        f"{LOGS}/{{dataset}}/binarize.log",
    benchmark:
        f"{BENCHMARKS}/{{dataset}}/binarize.tsv"
    conda:
        "../../envs/admin.yaml"
    threads: res("binarize", "cpus")
    resources:
        mem_mb=res("binarize", "mem_mb"),
        runtime=res("binarize", "runtime"),
    params:
        src=lambda wildcards: languages(wildcards.dataset)[0],
        tgt=lambda wildcards: languages(wildcards.dataset)[1],
    shell:
        "python -m admin.data.binarize --src {params.src:q} --tgt {params.tgt:q}"
        " --in {input.bpe:q} --out {output.data:q} --workers {threads}"
        " > {log:q} 2>&1"
