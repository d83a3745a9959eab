# OAKE: CLIP knowledge extraction (method section 5) into HDF5 shards, one job per shard, split and kind.
# Each job writes <shard>.partial, resumes after a kill, verifies, then renames into place.
# The shards of a kind live in results/oake/{dataset}/{kind}{variant}/: {variant} is empty at the reference's
# extraction settings, else a word per setting that differs (objects-expand_constant, objects-mask_off; made by
# oake_kind_folder, read back by oake_folder_settings: workflow/rules/inputs/oake.smk, pipeline/oake/settings.py).


# One extraction rule, inherited by the three kinds (rule names oake_{globals,blocks,objects} kept for logs,
# benchmarks and SLURM resources); only the objects kind reads proposals.
rule oake_globals:
    input:
        annotations=oake_source,
        images=oake_images,
        weights=clip_weights_input(),
    output:
        "results/oake/{dataset}/{kind}{variant}/{folder}/shard-{shard}.h5",
    log:
        "results/logs/oake_{kind}/{dataset}/{folder}{variant}/shard-{shard}.log",
    benchmark:
        "results/benchmarks/oake_{kind}/{dataset}/{folder}{variant}/shard-{shard}.tsv"
    wildcard_constraints:
        kind="globals",
        variant="(?:)",
    conda:
        "../../envs/clip.yaml"
    resources:
        gpu=1,
    params:
        model=config["clip"]["model"],
        weights=clip_weights_arg,
        shards=config["oake"]["shards"],
        index=shard_index,
        precision=config["oake"]["precision"],
        on_bad_image=config["on_bad_image"],
        max_pixels=config["max_image_pixels"],
        compression=config["oake"]["compression"],
        kind_args=oake_kind_args,
        dry=dry_run_flag(),
    shell:
        "python -m pipeline.oake.{wildcards.kind:q} --annotations {input.annotations:q} --images {input.images:q}"
        " --output {output:q} --shards {params.shards:q} --shard {params.index:q}"
        " --model {params.model:q} --weights {params.weights:q}"
        " --precision {params.precision:q} --on-bad-image {params.on_bad_image:q}"
        " --max-image-pixels {params.max_pixels:q}"
        " --compression {params.compression:q} {params.kind_args:q} {params.dry:q} --log {log:q}"


use rule oake_globals as oake_blocks with:
    wildcard_constraints:
        kind="blocks",
        variant="(?:)",


use rule oake_globals as oake_objects with:
    input:
        annotations=oake_source,
        images=oake_images,
        proposals="results/proposals/{dataset}/{folder}.h5",
        weights=clip_weights_input(),
    wildcard_constraints:
        kind="objects",
        variant=OAKE_VARIANT_PATTERN,


# The reference's released features (oake.import) replace extraction of the kinds they name: the same shards,
# verified the same way; objects then need no proposals.
if oake_imported_kinds():

    rule oake_import:
        input:
            sources=oake_import_sources,
            annotations=oake_source,
        output:
            "results/oake/{dataset}/{kind}/{folder}/shard-{shard}.h5",
        log:
            "results/logs/oake_import/{dataset}/{kind}/{folder}/shard-{shard}.log",
        benchmark:
            "results/benchmarks/oake_import/{dataset}/{kind}/{folder}/shard-{shard}.tsv"
        wildcard_constraints:
            kind="|".join(oake_imported_kinds()),
        conda:
            "../../envs/clip.yaml"
        params:
            model=config["clip"]["model"],
            shards=config["oake"]["shards"],
            index=shard_index,
            compression=config["oake"]["compression"],
            kind_args=oake_import_kind_args,
            dry=dry_run_flag(),
        shell:
            "python -m pipeline.released --log {log:q} features --kind {wildcards.kind:q}"
            " --source {input.sources:q} --annotations {input.annotations:q}"
            " --model {params.model:q} --output {output:q} --shards {params.shards:q} --shard {params.index:q}"
            " --compression {params.compression:q} {params.kind_args:q} {params.dry:q}"

    ruleorder: oake_import > oake_globals
    ruleorder: oake_import > oake_blocks
    ruleorder: oake_import > oake_objects


rule oake_verify:
    input:
        shards=oake_shards,
        annotations=oake_source,
    output:
        "results/oake/{dataset}/{kind}{variant}/{folder}/verify.json",
    log:
        "results/logs/oake_verify/{dataset}/{kind}{variant}/{folder}.log",
    wildcard_constraints:
        variant=OAKE_VARIANT_PATTERN,
    conda:
        "../../envs/clip.yaml"
    params:
        shards=config["oake"]["shards"],
        dry=dry_run_flag("--dry-run-cache"),
    shell:
        "python -m pipeline.oake.verify {input.shards:q} --annotations {input.annotations:q}"
        " --shards {params.shards:q} {params.dry:q} --report {output:q} --log {log:q}"
