# Data: catalog -> download -> caption -> clean, and the general (brand-free) set.

# The files under PATHS.external (local product tables live there): DVC depends on the
# folder, Snakemake on its files, so a changed table reruns the catalog under both.
EXTERNAL_TABLES = sorted(str(p) for p in Path(PATHS.external).rglob("*") if p.is_file())


rule catalog:
    input:
        script=script("catalog"),
        code=stage_code("catalog"),
        external=EXTERNAL_TABLES,
    output:
        catalog=PATHS.catalog,
        shop=directory(PATHS.shop),
    log:
        f"{PATHS.logs}/catalog.log",
    conda:
        "../envs/brandcap.yaml"
    params:
        seed=config["seed"],
        data=config["data"],
    shell:
        "python {input.script} {PARAMS_ARGS} --catalog {output.catalog} --shop {output.shop} --log {log}"


rule general_set:
    input:
        script=script("general_set"),
        code=stage_code("general_set"),
        external=PATHS.external,
    output:
        out=directory(PATHS.general),
    log:
        f"{PATHS.logs}/general_set.log",
    conda:
        "../envs/brandcap.yaml"
    params:
        seed=config["seed"],
        data=config["data"],
        download=config["download"],
    shell:
        "python {input.script} {PARAMS_ARGS} --out {output.out} --log {log}"


rule general_train_set:
    input:
        script=script("general_train_set"),
        code=stage_code("general_train_set"),
        probe=rules.general_set.output.out,
        external=PATHS.external,
    output:
        out=directory(PATHS.general_train),
    log:
        f"{PATHS.logs}/general_train_set.log",
    conda:
        "../envs/brandcap.yaml"
    params:
        seed=config["seed"],
        data=config["data"],
        download=config["download"],
        # the set is built only when an experiment mixes it in
        train__general_mix=config["train"]["general_mix"],
        train__experiments=config["train"]["experiments"],
    shell:
        "python {input.script} {PARAMS_ARGS} --probe {input.probe}/general.jsonl --out {output.out} --log {log}"


rule download:
    input:
        script=script("download"),
        code=stage_code("download"),
        catalog=rules.catalog.output.catalog,
        shop=rules.catalog.output.shop,
    output:
        images=directory(PATHS.images),
        manifest=PATHS.manifest,
    log:
        f"{PATHS.logs}/download.log",
    conda:
        "../envs/brandcap.yaml"
    params:
        data=config["data"],
        download=config["download"],
    shell:
        "python {input.script} {PARAMS_ARGS} --catalog {input.catalog} --images {output.images} --manifest {output.manifest} --resume {PATHS.resume}/download --log {log}"


rule caption:
    input:
        script=script("caption"),
        code=stage_code("caption"),
        manifest=rules.download.output.manifest,
        images=rules.download.output.images,
    output:
        captions=PATHS.captions,
    log:
        f"{PATHS.logs}/caption.log",
    conda:
        "../envs/brandcap.yaml"
    params:
        caption=config["caption"],
        clean=config["clean"],
    shell:
        "python {input.script} {PARAMS_ARGS} --manifest {input.manifest} --captions {output.captions} --resume {PATHS.resume}/caption --log {log}"


rule clean:
    input:
        script=script("clean"),
        code=stage_code("clean"),
        captions=rules.caption.output.captions,
    output:
        # the splits stay out of the report; the clean report and its examples go in
        out=report(
            directory(PATHS.processed),
            patterns=["clean_{part}.json", "clean_{part}.md"],
            caption="../report/clean.rst",
            category="Data",
            subcategory="Cleaning",
        ),
    log:
        f"{PATHS.logs}/clean.log",
    conda:
        "../envs/brandcap.yaml"
    params:
        seed=config["seed"],
        clean=config["clean"],
    shell:
        "python {input.script} {PARAMS_ARGS} --captions {input.captions} --out {output.out} --log {log}"
