# Reproduce "Understanding the Difficulty of Training Transformers" (Admin, Liu et al. 2020).
#
#   snakemake --cores all                        # the embedded demo (config/config.yaml)
#   snakemake -n paper_wmt14_en_de               # a paper table's full job plan
#   snakemake --cores all --config depths='[6-6]' seeds='[1111]' paper_all
#   snakemake --cores all analysis_output_change analysis_dependency   # the paper's analyses
#
# config/README.md documents every key; docs/step-contracts.md the steps the rules call.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


# The paper presets go under the config, then the whole is validated against
# workflow/schemas/config.schema.yaml (defaults filled in) and checked for consistency:
# a bad config stops here, before any job, with the key and the allowed values.
load_config(config)


wildcard_constraints:
    dataset=alternation(config["experiments"]),
    variant=alternation(VARIANTS),
    depth=r"[1-9][0-9]*-[1-9][0-9]*",
    seed=r"[0-9]+",
    archive=r"[^/]+",


# With --profile slurm: a job the cluster can never run stops the run before any sbatch.
onstart:
    check_slurm_requests()


include: "workflow/rules/data.smk"
include: "workflow/rules/bpe.smk"
include: "workflow/rules/binarize.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/analysis.smk"


localrules:
    all,
    paper_iwslt14_de_en,
    paper_wmt14_en_de,
    paper_wmt14_en_fr,
    paper_all,
    analysis_output_change,
    analysis_dependency,
    download,
    recipe,
    table,
    curves,
    bleu_plot,


rule all:
    default_target: True
    input:
        targets(config["datasets"]),
        # the analyses once built: kept up to date, and in `snakemake --report`
        built_analyses,


rule paper_iwslt14_de_en:
    input:
        paper_targets("iwslt14_de_en"),


rule paper_wmt14_en_de:
    input:
        paper_targets("wmt14_en_de"),


rule paper_wmt14_en_fr:
    input:
        paper_targets("wmt14_en_fr"),


rule paper_all:
    input:
        paper_targets("iwslt14_de_en"),
        paper_targets("wmt14_en_de"),
        paper_targets("wmt14_en_fr"),
