# The paper's analyses (admin.analysis): output change against depth and layer dependency,
# on a real batch of analysis.dataset's data-bin.  Targets analysis_output_change and
# analysis_dependency; not in the default target until built (see built_analyses).


rule analysis_output_change:
    input:
        output_change_targets(),


rule analysis_dependency:
    input:
        dependency_targets,


rule output_change:
    input:
        data=analysis_data_bin,
    output:
        csv=report(
            f"{ANALYSIS}/output_change.csv",
            caption="../report/output_change.rst",
            category="Analyses",
            subcategory="Output change",
            labels={"figure": "output change against depth", "file": "csv"},
        ),
        png=report(
            f"{ANALYSIS}/output_change.png",
            caption="../report/output_change.rst",
            category="Analyses",
            subcategory="Output change",
            labels={"figure": "output change against depth", "file": "png"},
        ),
    log:
        f"{ANALYSIS_LOGS}/output_change.log",
    benchmark:
        f"{ANALYSIS_BENCHMARKS}/output_change.tsv"
    conda:
        "../../envs/admin.yaml"
    threads: res("analysis", "cpus")
    resources:
        mem_mb=res("analysis", "mem_mb"),
        runtime=res("analysis", "runtime"),
    params:
        options=output_change_options,
    shell:
        "OMP_NUM_THREADS={threads} python -m admin.analysis.output_change"
        " --data-bin {input.data:q} {params.options:q} --threads {threads}"
        " --out-csv {output.csv:q} --out-png {output.png:q}"
        " > {log:q} 2>&1"


rule dependency:
    input:
        data=analysis_data_bin,
        profile=dependency_profile,
        average=dependency_average,
    output:
        png=report(
            f"{ANALYSIS}/dependency_{{variant}}_{{depth}}.png",
            caption="../report/dependency.rst",
            category="Analyses",
            subcategory="Layer dependency",
            labels={"variant": "{variant}", "depth": "{depth}", "file": "png"},
        ),
        csv=report(
            f"{ANALYSIS}/dependency_{{variant}}_{{depth}}.csv",
            caption="../report/dependency.rst",
            category="Analyses",
            subcategory="Layer dependency",
            labels={"variant": "{variant}", "depth": "{depth}", "file": "csv"},
        ),
    log:
        f"{ANALYSIS_LOGS}/dependency_{{variant}}_{{depth}}.log",
    benchmark:
        f"{ANALYSIS_BENCHMARKS}/dependency_{{variant}}_{{depth}}.tsv"
    conda:
        "../../envs/admin.yaml"
    threads: res("analysis", "cpus")
    resources:
        mem_mb=res("analysis", "mem_mb"),
        runtime=res("analysis", "runtime"),
    params:
        hparams=dependency_hparams,
        options=dependency_options,
    shell:
        "OMP_NUM_THREADS={threads} python -m admin.analysis.dependency"
        " --data-bin {input.data:q} --variant {wildcards.variant:q}"
        " --depth {wildcards.depth:q} --hparams {params.hparams:q} {params.options:q}"
        " --threads {threads} --out-png {output.png:q} --out-csv {output.csv:q}"
        " > {log:q} 2>&1"
