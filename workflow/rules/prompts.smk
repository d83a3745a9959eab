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
        renormalize="--renormalize" if config["prompts"]["renormalize"] else "",
        dry="--dry-run" if config["dry_run"] else "",
    shell:
        "python -m pipeline.prompts --log {log} vild --names-from {input.vocab}"
        " --model {params.model} --weights {params.weights:q}"
        " {params.renormalize} {params.dry} --output {output}"


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
        "python -m pipeline.prompts --log {log} detpro --input {input} --output {output}"


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
        "python -m pipeline.prompts --log {log} sample-exemplars --input {input}"
        " -k {params.k} --output {output}"


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
        dry="--dry-run" if config["dry_run"] else "",
    shell:
        "python -m pipeline.prompts --log {log} text --names-from {input.vocab}"
        " --descriptions {input.descriptions} {params.dry}"
        " --model {params.model} --weights {params.weights:q} --output {output}"


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
        dry="--dry-run" if config["dry_run"] else "",
    shell:
        "python -m pipeline.prompts --log {log} vision-avg --names-from {input.vocab}"
        " --exemplars {input.exemplars} --categories {input.categories} --images {input.images}"
        " --context {params.context} --num-augs {params.num_augs} {params.dry}"
        " --model {params.model} --weights {params.weights:q} --output {output}"


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
        "python -m pipeline.prompts --log {log} multimodal --text {input.text}"
        " --vision {input.vision} --output {output}"


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
        dry="--dry-run" if config["dry_run"] else "",
    shell:
        "python -m pipeline.prompts --log {log} ml --train-annotations {input.train}"
        " --num-base {params.num_base} --globals {input.globals_train}"
        " --val-annotations {input.val} --val-globals {input.globals_val}"
        " --epochs {params.epochs} {params.dry} --model {params.model} --weights {params.weights:q}"
        " --output {output}"


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
            "python -m pipeline.released --log {log} prompt --input {input.prompt:q}"
            " --names-from {input.vocab} --kind {wildcards.name} --output {output}"

    ruleorder: prompts_import > prompts_ml
    ruleorder: prompts_import > prompts_vild
