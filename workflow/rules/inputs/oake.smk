# Input functions and parameters of the oake rules (workflow/rules/oake.smk). No rules here.


def shard_index(wildcards):
    return int(wildcards.shard)


def oake_shards(wildcards):
    return oake_shard_files(wildcards.kind, wildcards.folder, wildcards.dataset)


def oake_targets():
    """Verified caches of every configured kind and split."""
    return expand(
        "results/oake/{dataset}/{kind}/{folder}/verify.json",
        dataset=DATASET,
        kind=config["oake"]["kinds"],
        folder=OAKE_FOLDERS,
    )


def oake_kind_args(wildcards, input):
    """The arguments one kind of extractor adds: the block-0 box (blocks), the proposals and the storage
    (objects)."""
    kind = wildcards.kind
    if kind == "blocks":
        return ["--block0-box", str(config["oake"]["block0_box"])]
    if kind == "objects":
        return [
            "--proposals",
            input.proposals,
            "--storage",
            config["oake"]["object_storage"],
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
