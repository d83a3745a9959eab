"""The workflow's Python side, importable without Snakemake: the configuration's layers (:mod:`.config_layers`),
its validation (:mod:`.config_check`) and the files from elsewhere a run reads (:mod:`.pretrained`). The rule
files under ``rules/`` call them while Snakemake parses the workflow."""
