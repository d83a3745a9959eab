# Class-embedding files (method section 3, MM-OVOD): dicts {names, embeddings[, scaler, bias], meta}
# under results/prompts/, loadable with torch.load(weights_only=True); consumers select rows by name.


rule prompts_vild:
    input:
        vocab=prompt_vocab_files,
        weights=clip_weights_input(),
    output:
        "results/prompts/vild.pth",
    log:
        "results/logs/prompts_vild/vild.log",
    benchmark:
        "results/benchmarks/prompts_vild.tsv"
    conda:
        "../../envs/clip.yaml"
    resources:
        gpu=1,
    params:
        model=config["clip"]["model"],
        weights=clip_weights_arg,
        renormalize=["--renormalize"] if config["prompts"]["renormalize"] else [],
        dry=dry_run_flag(),
    shell:
        "python -m pipeline.prompts --log {log:q} vild --names-from {input.vocab:q}"
        " --model {params.model:q} --weights {params.weights:q}"
        " {params.renormalize:q} {params.dry:q} --output {output:q}"


rule prompts_detpro:
    input:
        optional_path("prompts", "detpro"),
    output:
        "results/prompts/detpro_lvis.pth",
    log:
        "results/logs/prompts_detpro/detpro_lvis.log",
    conda:
        "../../envs/clip.yaml"
    shell:
        "python -m pipeline.prompts --log {log:q} detpro --input {input:q} --output {output:q}"


rule prompts_exemplars:
    input:
        all_classes_file(DATASET, "train"),
    output:
        "results/prompts/exemplars.json",
    log:
        "results/logs/prompts_exemplars/exemplars.log",
    conda:
        "../../envs/clip.yaml"
    params:
        k=config["prompts"]["exemplars"]["k"],
    shell:
        "python -m pipeline.prompts --log {log:q} sample-exemplars --input {input:q}"
        " -k {params.k:q} --output {output:q}"


rule prompts_mmovod_text:
    input:
        vocab=all_classes_file(DATASET, "val"),
        descriptions=optional_path("prompts", "descriptions"),
        weights=clip_weights_input(),
    output:
        "results/prompts/mmovod_text.pth",
    log:
        "results/logs/prompts_mmovod_text/mmovod_text.log",
    conda:
        "../../envs/clip.yaml"
    resources:
        gpu=1,
    params:
        model=config["clip"]["model"],
        weights=clip_weights_arg,
        dry=dry_run_flag(),
    shell:
        "python -m pipeline.prompts --log {log:q} text --names-from {input.vocab:q}"
        " --descriptions {input.descriptions:q} {params.dry:q}"
        " --model {params.model:q} --weights {params.weights:q} --output {output:q}"


rule prompts_mmovod_vision_avg:
    input:
        vocab=all_classes_file(DATASET, "val"),
        categories=all_classes_file(DATASET, "train"),
        exemplars="results/prompts/exemplars.json",
        images=image_dir(DATASET, "train"),
        weights=clip_weights_input(),
    output:
        "results/prompts/mmovod_vision_avg.pth",
    log:
        "results/logs/prompts_mmovod_vision_avg/mmovod_vision_avg.log",
    benchmark:
        "results/benchmarks/prompts_mmovod_vision_avg.tsv"
    conda:
        "../../envs/clip.yaml"
    resources:
        gpu=1,
    params:
        model=config["clip"]["model"],
        weights=clip_weights_arg,
        context=config["prompts"]["exemplars"]["context"],
        num_augs=config["prompts"]["exemplars"]["num_augs"],
        dry=dry_run_flag(),
    shell:
        "python -m pipeline.prompts --log {log:q} vision-avg --names-from {input.vocab:q}"
        " --exemplars {input.exemplars:q} --categories {input.categories:q} --images {input.images:q}"
        " --context {params.context:q} --num-augs {params.num_augs:q} {params.dry:q}"
        " --model {params.model:q} --weights {params.weights:q} --output {output:q}"


rule prompts_mmovod_multimodal:
    input:
        text="results/prompts/mmovod_text.pth",
        vision="results/prompts/mmovod_vision_avg.pth",
    output:
        "results/prompts/mmovod_multimodal.pth",
    log:
        "results/logs/prompts_mmovod_multimodal/mmovod_multimodal.log",
    conda:
        "../../envs/clip.yaml"
    shell:
        "python -m pipeline.prompts --log {log:q} multimodal --text {input.text:q}"
        " --vision {input.vision:q} --output {output:q}"


rule prompts_ml:
    input:
        train=base_file(DATASET, "train"),
        val=all_classes_file(DATASET, "val"),
        globals_train=globals_shards(OAKE_FOLDERS[0]),
        globals_val=globals_shards(OAKE_FOLDERS[1]),
        weights=clip_weights_input(),
    output:
        "results/prompts/ml.pth",
    log:
        "results/logs/prompts_ml/ml.log",
    benchmark:
        "results/benchmarks/prompts_ml.tsv"
    conda:
        "../../envs/clip.yaml"
    resources:
        gpu=1,
    params:
        model=config["clip"]["model"],
        weights=clip_weights_arg,
        num_base=num_base(),
        epochs=config["prompts"]["ml_epochs"],
        dry=dry_run_flag(),
    shell:
        "python -m pipeline.prompts --log {log:q} ml --train-annotations {input.train:q}"
        " --num-base {params.num_base:q} --globals {input.globals_train:q}"
        " --val-annotations {input.val:q} --val-globals {input.globals_val:q}"
        " --epochs {params.epochs:q} {params.dry:q} --model {params.model:q} --weights {params.weights:q}"
        " --output {output:q}"


# The reference's prompt files (prompts.import: its released ml_coco.pth) replace building the names they give.
if prompt_imports():

    rule prompts_import:
        input:
            prompt=imported_prompt,
            vocab=imported_prompt_vocab,
        output:
            "results/prompts/{name}.pth",
        log:
            "results/logs/prompts_import/{name}.log",
        wildcard_constraints:
            name="|".join(prompt_imports()),
        conda:
            "../../envs/clip.yaml"
        shell:
            "python -m pipeline.released --log {log:q} prompt --input {input.prompt:q}"
            " --names-from {input.vocab:q} --kind {wildcards.name:q} --output {output:q}"

    ruleorder: prompts_import > prompts_ml
    ruleorder: prompts_import > prompts_vild
