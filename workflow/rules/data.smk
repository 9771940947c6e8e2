# Raw data: downloads (local rules) and preparation, once per dataset.


rule download:
    output:
        archive=f"{RESOURCES}/{{dataset}}/archives/{{archive}}",
    log:
        f"{LOGS}/{{dataset}}/download/{{archive}}.log",
    conda:
        "../../envs/data.yaml"
    threads: res("download", "cpus")
    resources:
        mem_mb=res("download", "mem_mb"),
        runtime=res("download", "runtime"),
    params:
        dataset=lambda wildcards: source(wildcards.dataset),
        out=lambda wildcards, output: str(Path(output.archive).parent),
        options=download_options,
    shell:
        "python -m admin.data.download --dataset {params.dataset:q}"
        " --out {params.out:q} --only {wildcards.archive:q} {params.options:q}"
        " > {log:q} 2>&1"


rule prepare:
    input:
        archives=archives,
    output:
        prepared=directory(f"{RESOURCES}/{{dataset}}/prepared"),
    log:
        f"{LOGS}/{{dataset}}/prepare.log",
    benchmark:
        f"{BENCHMARKS}/{{dataset}}/prepare.tsv"
    wildcard_constraints:
        dataset=alternation(datasets_by_source(demo=False)),
    conda:
        "../../envs/data.yaml"
    threads: res("prepare", "cpus")
    resources:
        mem_mb=res("prepare", "mem_mb"),
        runtime=res("prepare", "runtime"),
    params:
        dataset=lambda wildcards: source(wildcards.dataset),
        archives=lambda wildcards, input: str(Path(input.archives[0]).parent),
    shell:
        "python -m admin.data.prepare --dataset {params.dataset:q}"
        " --archives {params.archives:q} --out {output.prepared:q} --workers {threads}"
        " > {log:q} 2>&1"


rule demo_corpus:
    output:
        raw=directory(f"{RESOURCES}/{{dataset}}/raw"),
    log:
        f"{LOGS}/{{dataset}}/demo_corpus.log",
    benchmark:
        f"{BENCHMARKS}/{{dataset}}/demo_corpus.tsv"
    wildcard_constraints:
        dataset=alternation(datasets_by_source(demo=True)),
    conda:
        "../../envs/data.yaml"
    threads: res("demo_corpus", "cpus")
    resources:
        mem_mb=res("demo_corpus", "mem_mb"),
        runtime=res("demo_corpus", "runtime"),
    params:
        options=corpus_options,
    shell:
        "python -m admin.data.demo_corpus --out {output.raw:q} {params.options:q}"
        " > {log:q} 2>&1"


rule tokenize:
    input:
        raw=f"{RESOURCES}/{{dataset}}/raw",
    output:
        prepared=directory(f"{RESOURCES}/{{dataset}}/prepared"),
    log:
        f"{LOGS}/{{dataset}}/tokenize.log",
    benchmark:
        f"{BENCHMARKS}/{{dataset}}/tokenize.tsv"
    wildcard_constraints:
        dataset=alternation(datasets_by_source(demo=True)),
    conda:
        "../../envs/data.yaml"
    threads: res("tokenize", "cpus")
    resources:
        mem_mb=res("tokenize", "mem_mb"),
        runtime=res("tokenize", "runtime"),
    params:
        src=lambda wildcards: languages(wildcards.dataset)[0],
        tgt=lambda wildcards: languages(wildcards.dataset)[1],
        options=tokenize_options,
    shell:
        "python -m admin.data.tokenize --src {params.src:q} --tgt {params.tgt:q}"
        " --in {input.raw:q} --out {output.prepared:q} {params.options:q} --workers {threads}"
        " > {log:q} 2>&1"
