# Model: the base model and one training run per experiment (freezing strategy) and training seed.


rule base_model:
    input:
        script=script("base_model"),
        code=stage_code("base_model"),
        catalog=rules.catalog.output.catalog,
        standin=PATHS.standin,
    output:
        out=directory(PATHS.base_model),
    log:
        f"{PATHS.logs}/base_model.log",
    conda:
        "../envs/brandcap.yaml"
    params:
        seed=config["seed"],
        model=config["model"],
        train__instruction=config["train"]["instruction"],
    shell:
        "python {input.script} {PARAMS_ARGS} --catalog {input.catalog} --out {output.out} --log {log}"


rule train:
    input:
        script=script("train"),
        code=stage_code("train"),
        base=rules.base_model.output.out,
        processed=rules.clean.output.out,
        images=rules.download.output.images,
        general_train=rules.general_train_set.output.out,
    output:
        checkpoints=directory(f"{PATHS.checkpoints}/{RUN}"),
        train_log=directory(f"{PATHS.train_logs}/{RUN}"),
        dvclive_metrics=f"{PATHS.dvclive}/{RUN}/metrics.json",
        dvclive_plots=directory(f"{PATHS.dvclive}/{RUN}/plots"),
    log:
        f"{PATHS.logs}/train/{RUN}.log",
    priority: train_priority
    conda:
        "../envs/brandcap.yaml"
    # one core per process: above one device the job runs train.devices processes of one thread each
    # (brandcap.running.launch.threads_per_process), so `--cores 2` never runs two such jobs at once
    threads: PARAMS.train.devices
    resources:
        # the job claims this many GPUs and, above one, relaunches itself through torchrun
        gpu=PARAMS.train.devices,
    params:
        # every train key but the matrix axes, and this run's own experiment entry: adding a seed or
        # an experiment does not rerun the runs that exist (dvc.yaml lists the same keys)
        **{f"train__{key}": config["train"][key] for key in TRAIN_RUN_KEYS},
        train__experiment=lambda wildcards: config["train"]["experiments"][wildcards.exp],
        eval__general_instruction=config["eval"]["general_instruction"],
    shell:
        "python {input.script} {PARAMS_ARGS} --experiment {wildcards.exp} --seed {wildcards.seed} --base {input.base} --train {input.processed}/train.jsonl --general-train {input.general_train}/general_train.jsonl --checkpoints {output.checkpoints} --train-log {output.train_log} --dvclive {PATHS.dvclive}/{wildcards.exp}/seed-{wildcards.seed} --resume {PATHS.resume}/train/{wildcards.exp}/seed-{wildcards.seed} --log {log}"
