# Glue shared by all rules: params validation, the params file passed to every command,
# the experiment matrix and the final targets.

from brandcap.params import ParamsError, validate_params

# The last --configfile given (a profile is a whole parameter file), else params.yaml.
PARAMS_FILE = workflow.overwrite_configfiles[-1] if workflow.overwrite_configfiles else "params.yaml"

try:
    PARAMS = validate_params(config, str(PARAMS_FILE))
except ParamsError as err:
    raise WorkflowError(str(err)) from None

EXPERIMENTS = list(PARAMS.train.experiments)
SAVE_EPOCHS = list(PARAMS.train.save_epochs)


wildcard_constraints:
    exp="|".join(EXPERIMENTS),
    epoch=r"\d+",


# Artifact inputs are marked ancient(): DVC does not keep modification times on checkout, and
# Snakemake cannot checksum directories, so a change reaches downstream jobs through the upstream
# job that reran (and through params and code), never through a timestamp.


def script(name):
    return f"workflow/scripts/{name}.py"


def package(*modules):
    return [f"src/brandcap/{m}.py" for m in modules]


def final_targets():
    return ["results/tables.md", "results/metrics.json"]
