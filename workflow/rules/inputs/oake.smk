# Input functions and parameters of the oake rules (workflow/rules/oake.smk). No rules here.


def shard_index(wildcards):
    return int(wildcards.shard)


def oake_shards(wildcards):
    return expand(
        "results/oake/{dataset}/{kind}/{folder}/shard-{shard}.h5",
        dataset=wildcards.dataset,
        kind=wildcards.kind,
        folder=wildcards.folder,
        shard=[f"{i:03d}" for i in range(config["oake"]["shards"])],
    )


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
        return f"--block0-box {config['oake']['block0_box']}"
    if kind == "objects":
        return f"--proposals {input.proposals} --storage {config['oake']['object_storage']}"
    return ""
