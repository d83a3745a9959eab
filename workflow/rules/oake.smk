# OAKE: CLIP knowledge extraction (method section 5) into HDF5 shards, one job per shard, split and kind.
# Each job writes <shard>.partial, resumes after a kill, verifies, then renames into place.


rule oake_globals:
    input:
        annotations=oake_source,
        images=oake_images,
        weights=clip_weights_input(),
    output:
        "results/oake/{dataset}/globals/{folder}/shard-{shard}.h5",
    log:
        "results/logs/oake_globals/{dataset}/{folder}/shard-{shard}.log",
    benchmark:
        "results/benchmarks/oake_globals/{dataset}/{folder}/shard-{shard}.tsv"
    conda:
        "../../envs/clip.yaml"
    resources:
        gpu=1,
    params:
        clip=config["clip"],
        oake=config["oake"],
        index=shard_index,
        dry="--dry-run" if config["dry_run"] else "",
    shell:
        "python -m pipeline.oake.globals --annotations {input.annotations} --images {input.images}"
        " --output {output} --shards {params.oake[shards]} --shard {params.index}"
        " --model {params.clip[model]} --weights {params.clip[weights]:q}"
        " --precision {params.oake[precision]} --on-bad-image {params.oake[on_bad_image]}"
        " --compression {params.oake[compression]}"
        " {params.dry} --log {log}"


rule oake_blocks:
    input:
        annotations=oake_source,
        images=oake_images,
        weights=clip_weights_input(),
    output:
        "results/oake/{dataset}/blocks/{folder}/shard-{shard}.h5",
    log:
        "results/logs/oake_blocks/{dataset}/{folder}/shard-{shard}.log",
    benchmark:
        "results/benchmarks/oake_blocks/{dataset}/{folder}/shard-{shard}.tsv"
    conda:
        "../../envs/clip.yaml"
    resources:
        gpu=1,
    params:
        clip=config["clip"],
        oake=config["oake"],
        index=shard_index,
        dry="--dry-run" if config["dry_run"] else "",
    shell:
        "python -m pipeline.oake.blocks --annotations {input.annotations} --images {input.images}"
        " --output {output} --shards {params.oake[shards]} --shard {params.index}"
        " --model {params.clip[model]} --weights {params.clip[weights]:q}"
        " --precision {params.oake[precision]} --on-bad-image {params.oake[on_bad_image]}"
        " --compression {params.oake[compression]}"
        " --block0-box {params.oake[block0_box]} {params.dry} --log {log}"


rule oake_objects:
    input:
        annotations=oake_source,
        images=oake_images,
        proposals="results/proposals/{dataset}/{folder}.h5",
        weights=clip_weights_input(),
    output:
        "results/oake/{dataset}/objects/{folder}/shard-{shard}.h5",
    log:
        "results/logs/oake_objects/{dataset}/{folder}/shard-{shard}.log",
    benchmark:
        "results/benchmarks/oake_objects/{dataset}/{folder}/shard-{shard}.tsv"
    conda:
        "../../envs/clip.yaml"
    resources:
        gpu=1,
    params:
        clip=config["clip"],
        oake=config["oake"],
        index=shard_index,
        dry="--dry-run" if config["dry_run"] else "",
    shell:
        "python -m pipeline.oake.objects --annotations {input.annotations} --images {input.images}"
        " --proposals {input.proposals} --output {output}"
        " --shards {params.oake[shards]} --shard {params.index}"
        " --model {params.clip[model]} --weights {params.clip[weights]:q}"
        " --precision {params.oake[precision]} --on-bad-image {params.oake[on_bad_image]}"
        " --compression {params.oake[compression]}"
        " --storage {params.oake[object_storage]} {params.dry} --log {log}"


rule oake_verify:
    input:
        shards=oake_shards,
        annotations=oake_source,
    output:
        "results/oake/{dataset}/{kind}/{folder}/verify.json",
    log:
        "results/logs/oake_verify/{dataset}/{kind}/{folder}.log",
    conda:
        "../../envs/clip.yaml"
    params:
        shards=config["oake"]["shards"],
        dry="--dry-run-cache" if config["dry_run"] else "",
    shell:
        "python -m pipeline.oake.verify {input.shards} --annotations {input.annotations}"
        " --shards {params.shards} {params.dry} --report {output} --log {log}"
