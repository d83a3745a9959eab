"""The workflow's Python side, importable without Snakemake: the configuration's layers (:mod:`.config_layers`),
its checks (:mod:`.config_check`, the names and paths of :mod:`.config_names`) and the files from elsewhere a run
reads (:mod:`.pretrained`). The rule files under ``rules/`` call them while Snakemake parses the workflow."""
