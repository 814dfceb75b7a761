# Evaluation of the base model (epoch 0) and of every checkpoint (one job per experiment x seed scores
# all its epochs, paying the imports and the model load once), the baselines, the review page, the
# export of the best checkpoint, then the tables.


rule evaluate_base:
    input:
        script=script("evaluate"),
        code=stage_code("evaluate_base"),
        base=rules.base_model.output.out,
        processed=rules.clean.output.out,
        general=rules.general_set.output.out,
        images=rules.download.output.images,
    output:
        out=directory(f"{PATHS.eval}/base/epoch-0"),
    log:
        f"{PATHS.logs}/evaluate/base/epoch-0.log",
    conda:
        "../envs/brandcap.yaml"
    resources:
        gpu=1,
    params:
        **eval_params(SCORED_EVAL_KEYS),
        train__instruction=config["train"]["instruction"],
        train__max_length=config["train"]["max_length"],
    shell:
        "python {input.script} {PARAMS_ARGS} --base {input.base} --test {input.processed}/test.jsonl --val {input.processed}/val.jsonl --general {input.general}/general.jsonl --out {output.out} --resume {PATHS.resume}/eval/base/epoch-0 --log {log}"


rule evaluate:
    input:
        script=script("evaluate"),
        code=stage_code("evaluate"),
        base=rules.base_model.output.out,
        checkpoints=rules.train.output.checkpoints,
        processed=rules.clean.output.out,
        general=rules.general_set.output.out,
        images=rules.download.output.images,
    output:
        out=directory(f"{PATHS.eval}/{RUN}"),
    log:
        f"{PATHS.logs}/evaluate/{RUN}.log",
    conda:
        "../envs/brandcap.yaml"
    resources:
        gpu=1,
    params:
        **eval_params(SCORED_EVAL_KEYS),
        train__instruction=config["train"]["instruction"],
        train__max_length=config["train"]["max_length"],
        train__save_epochs=config["train"]["save_epochs"],
    shell:
        "python {input.script} {PARAMS_ARGS} --base {input.base} --checkpoints {input.checkpoints} --test {input.processed}/test.jsonl --val {input.processed}/val.jsonl --general {input.general}/general.jsonl --out {output.out} --resume {PATHS.resume}/eval/{wildcards.exp}/seed-{wildcards.seed} --log {log}"


rule evaluate_prompted:
    input:
        script=script("evaluate"),
        code=stage_code("evaluate_prompted"),
        base=rules.base_model.output.out,
        processed=rules.clean.output.out,
        images=rules.download.output.images,
    output:
        out=directory(f"{PATHS.eval}/base/prompted"),
    log:
        f"{PATHS.logs}/evaluate/base/prompted.log",
    conda:
        "../envs/brandcap.yaml"
    resources:
        gpu=1,
    params:
        **eval_params(PROMPTED_EVAL_KEYS),
        train__instruction=config["train"]["instruction"],
        train__max_length=config["train"]["max_length"],
    shell:
        "python {input.script} {PARAMS_ARGS} --base {input.base} --prompted --test {input.processed}/test.jsonl --out {output.out} --resume {PATHS.resume}/eval/base/prompted --log {log}"


rule baselines:
    input:
        script=script("baselines"),
        code=stage_code("baselines"),
        processed=rules.clean.output.out,
        images=rules.download.output.images,
    output:
        out=directory(PATHS.baselines),
    log:
        f"{PATHS.logs}/baselines.log",
    conda:
        "../envs/brandcap.yaml"
    params:
        seed=config["seed"],
        eval__max_test_samples=config["eval"]["max_test_samples"],
    shell:
        "python {input.script} {PARAMS_ARGS} --train {input.processed}/train.jsonl --test {input.processed}/test.jsonl --out {output.out} --log {log}"


rule linear_probe:
    input:
        script=script("linear_probe"),
        code=stage_code("linear_probe"),
        base=rules.base_model.output.out,
        processed=rules.clean.output.out,
        images=rules.download.output.images,
    output:
        out=directory(PATHS.linear_probe),
    log:
        f"{PATHS.logs}/linear_probe.log",
    conda:
        "../envs/brandcap.yaml"
    params:
        seed=config["seed"],
        eval__max_test_samples=config["eval"]["max_test_samples"],
    shell:
        "python {input.script} {PARAMS_ARGS} --base {input.base} --train {input.processed}/train.jsonl --test {input.processed}/test.jsonl --out {output.out} --log {log}"


rule export:
    input:
        script=script("export"),
        code=stage_code("export"),
        base=rules.base_model.output.out,
        checkpoints=expand(str(rules.train.output.checkpoints), exp=EXPERIMENTS, seed=SEEDS),
        evaluations=[rules.evaluate_base.output.out] + expand(str(rules.evaluate.output.out), exp=EXPERIMENTS, seed=SEEDS),
        processed=rules.clean.output.out,
    output:
        out=directory(PATHS.export),
    log:
        f"{PATHS.logs}/export.log",
    conda:
        "../envs/brandcap.yaml"
    params:
        train=config["train"],
    shell:
        "python {input.script} {PARAMS_ARGS} --base {input.base} --checkpoints {PATHS.checkpoints} --eval-dir {PATHS.eval} --processed {input.processed} --out {output.out} --log {log}"


rule review:
    input:
        script=script("review"),
        code=stage_code("review"),
        processed=rules.clean.output.out,
        images=rules.download.output.images,
        evaluations=[rules.evaluate_base.output.out] + expand(str(rules.evaluate.output.out), exp=EXPERIMENTS, seed=SEEDS),
    output:
        out=report(
            directory(PATHS.review),
            htmlindex="index.html",
            caption="../report/review.rst",
            category="Review",
            subcategory="Test answers",
        ),
    log:
        f"{PATHS.logs}/review.log",
    conda:
        "../envs/brandcap.yaml"
    params:
        train=config["train"],
    shell:
        "python {input.script} {PARAMS_ARGS} --test {input.processed}/test.jsonl --val {input.processed}/val.jsonl --eval-dir {PATHS.eval} --out {output.out} --log {log}"


rule tables:
    input:
        script=script("tables"),
        code=stage_code("tables"),
        catalog=rules.catalog.output.catalog,
        manifest=rules.download.output.manifest,
        captions=rules.caption.output.captions,
        processed=rules.clean.output.out,
        train_logs=expand(str(rules.train.output.train_log), exp=EXPERIMENTS, seed=SEEDS),
        dvclive=expand(str(rules.train.output.dvclive_metrics), exp=EXPERIMENTS, seed=SEEDS) + expand(str(rules.train.output.dvclive_plots), exp=EXPERIMENTS, seed=SEEDS),
        checkpoints=expand(str(rules.train.output.checkpoints), exp=EXPERIMENTS, seed=SEEDS),
        evaluations=[rules.evaluate_base.output.out, rules.evaluate_prompted.output.out] + expand(str(rules.evaluate.output.out), exp=EXPERIMENTS, seed=SEEDS),
        baselines=rules.baselines.output.out,
        linear_probe=rules.linear_probe.output.out,
        review=rules.review.output.out,
        # not read by the tables: built with them, so the default run ends with a servable best model
        export=rules.export.output.out,
    output:
        tables=report(
            PATHS.tables,
            caption="../report/tables.rst",
            category="Results",
            subcategory="Tables",
        ),
        metrics=report(
            PATHS.metrics,
            caption="../report/metrics.rst",
            category="Results",
            subcategory="Tables",
        ),
        plots=report(
            directory(PATHS.plots),
            patterns=["{plot}.png"],
            caption="../report/plots.rst",
            category="Results",
            subcategory="Plots",
        ),
    log:
        f"{PATHS.logs}/tables.log",
    conda:
        "../envs/brandcap.yaml"
    params:
        train=config["train"],
        eval__general_instruction=config["eval"]["general_instruction"],
        tables=config["tables"],
    shell:
        "python {input.script} {PARAMS_ARGS} --catalog {input.catalog} --manifest {input.manifest} --captions {input.captions} --clean-report {input.processed}/clean_report.json --train-dir {PATHS.train_logs} --dvclive-dir {PATHS.dvclive} --checkpoints {PATHS.checkpoints} --eval-dir {PATHS.eval} --baselines {input.baselines} --linear-probe {input.linear_probe} --review {input.review} --tables {output.tables} --metrics {output.metrics} --plots {output.plots} --log {log}"
