# The repository's entry point: `snakemake` in this folder runs the workflow, which lives
# in workflow/Snakefile (the layout of the Snakemake workflow catalog and snakedeploy).


include: "workflow/Snakefile"


localrules:
    default,


# An included file's default target does not carry over to the including one: this is the
# workflow's `all` (the embedded demo, and the analyses once built).
rule default:
    default_target: True
    input:
        rules.all.input,
