"""The study's stages: one module per DAG stage, named after its Snakemake rule and DVC stage."""
