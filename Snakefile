# brandcap: can fine-tuning teach a VLM to name a product's brand, and which parts to freeze?
#
#   snakemake --cores 1 results/tables.md                                 # default CPU profile
#   snakemake --cores 1 results/tables.md --configfile configs/smoke.yaml # another profile
#   snakemake --report run-report.zip                                     # one page of the run (report/*.rst)
#
# The same stages and commands are in dvc.yaml (tests/test_dag_agreement.py keeps them equal).


configfile: "params.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/model.smk"
include: "rules/evaluate.smk"


rule all:
    input:
        final_targets(),
