# Input functions and parameters of the oake rules (workflow/rules/oake.smk). No rules here.

import jsonschema
import yaml

from pipeline.oake import settings as oake_settings

# Extraction settings (pipeline/oake/settings.py): the shards of a kind live under results/oake/{dataset}/ in the
# folder its settings name, "objects" at the schema's defaults (the reference's), e.g. "objects-expand_constant".
_OAKE_SCHEMA = yaml.safe_load(
    (Path(workflow.basedir) / "workflow/schemas/config.schema.yaml").read_text()
)["properties"]["oake"]["properties"]
OAKE_DEFAULTS = {name: _OAKE_SCHEMA[name]["default"] for name in oake_settings.SETTINGS}
OAKE_VARIANT_PATTERN = oake_settings.SUFFIX_PATTERN


def oake_extraction(overrides=None, key="oake"):
    """Every extraction setting of a run or an experiment: ``overrides`` (an experiment variant's ``oake``
    mapping) over the run's ``oake.<setting>`` values; an unknown setting or a bad value is an error naming
    ``key``."""
    full = oake_settings.resolve(config["oake"], overrides, key)
    for name, value in (overrides or {}).items():
        try:
            jsonschema.validate(value, _OAKE_SCHEMA[name])
        except jsonschema.ValidationError as err:
            raise ValueError(f"config key '{key}.{name}': {err.message}") from None
    return full


def oake_kind_folder(kind, overrides=None, key="oake"):
    """The folder of ``kind``'s shards under results/oake/{dataset}/ for the run's extraction settings, or an
    experiment's (``overrides``: its variant's ``oake`` mapping): the kind, then a word per setting that changes
    that kind and differs from the schema's default. ``oake_shard_files(oake_kind_folder(kind, e.oake), folder)``
    are the shards an experiment ``e`` reads."""
    return oake_settings.kind_folder(kind, oake_extraction(overrides, key), OAKE_DEFAULTS)


def oake_folder_settings(wildcards):
    """The extraction settings an oake rule's ``{kind}{variant}`` folder names."""
    return oake_settings.parse_suffix(wildcards.variant, wildcards.kind, OAKE_DEFAULTS)


def shard_index(wildcards):
    return int(wildcards.shard)


def oake_shards(wildcards):
    oake_folder_settings(wildcards)  # a folder that names no settings of its kind is an error here, not a missing rule
    return oake_shard_files(
        wildcards.kind + wildcards.variant, wildcards.folder, wildcards.dataset
    )


def oake_targets():
    """Verified caches: of the configured kinds, the cache folders that trained experiments distil from (their
    resolved heads and extraction settings: read_caches), both splits at the run's settings and the training split
    of a variant's own; every configured kind when no experiment is configured."""
    if not EXPERIMENTS:
        folders = [oake_kind_folder(k) for k in config["oake"]["kinds"]]
    else:
        folders = [
            f for f in read_caches() if f.split("-", 1)[0] in config["oake"]["kinds"]
        ]
    run_folders = {oake_kind_folder(k) for k in ("globals", "blocks", "objects")}
    return [
        f"results/oake/{DATASET}/{folder}/{split}/verify.json"
        for folder in folders
        for split in (OAKE_FOLDERS if folder in run_folders else OAKE_FOLDERS[:1])
    ]


def oake_kind_args(wildcards, input):
    """The arguments one kind of extractor adds: the block-0 box (blocks); the proposals, the storage and the
    extraction settings its folder names (objects)."""
    kind = wildcards.kind
    settings = oake_folder_settings(wildcards)
    if kind == "blocks":
        return ["--block0-box", str(config["oake"]["block0_box"])]
    if kind == "objects":
        masking = "--object-masking" if settings["object_masking"] else "--no-object-masking"
        return [
            "--proposals",
            input.proposals,
            "--storage",
            config["oake"]["object_storage"],
            "--expand-mode",
            settings["expand_mode"],
            masking,
        ]
    return []


def oake_imported_kinds():
    """The kinds whose shards come from the reference's released features (oake.import) instead of extraction."""
    return [
        k for k in ("globals", "blocks", "objects") if config["oake"]["import"].get(k)
    ]


def oake_import_sources(wildcards):
    """The release folders and archives of one kind (oake.import.<kind>), as a list."""
    value = config["oake"]["import"][wildcards.kind]
    return [value] if isinstance(value, str) else list(value)


def oake_import_kind_args(wildcards):
    """The arguments one kind of import adds: the block-0 box (blocks), the storage (objects)."""
    if wildcards.kind == "blocks":
        return ["--block0-box", str(config["oake"]["block0_box"])]
    if wildcards.kind == "objects":
        return ["--storage", config["oake"]["object_storage"]]
    return []
