# Detector training (method section 6) and inference: results/train/{experiment}/final.pth and
# COCO-format detections results/evaluate/{experiment}/detections.json (+ the bbox head's embeddings of the
# ground-truth boxes, regions.npz, for the open-ended evaluation).


rule train:
    input:
        unpack(train_inputs),
    output:
        "results/train/{experiment}/final.pth",
    log:
        main="results/logs/train/{experiment}.log",
        runner="results/logs/train/{experiment}.runner.log",
    benchmark:
        "results/benchmarks/train/{experiment}.tsv"
    wildcard_constraints:
        experiment=RUN_PATTERN,
    conda:
        "../../envs/mmdet.yaml"
    resources:
        gpu=config["train"]["gpus"],
    params:
        work_dir=train_work_dir,
        inputs=train_shard_args,
        options=train_options,
        gpus=config["train"]["gpus"],
        num_base=num_base(),
        run=run_config_args,
    # Snakemake deletes {log.runner} before every attempt: each attempt's output is also appended, under a header
    # line, to {log.runner}.history (not a declared log, so it survives reruns and resumed trainings)
    shell:
        "echo \"==== $(date '+%Y-%m-%d %H:%M:%S') $(uname -n) train \"{wildcards.experiment:q}\" ====\""
        " >> {log.runner:q}.history; set -o pipefail;"
        " python -m pipeline.train --log {log.main:q} fit --experiment={wildcards.experiment:q}"
        " --names-from {input.names:q} --num-base {params.num_base:q}"
        " --annotations {input.annotations:q} --images {input.images:q}"
        " {params.inputs:q} --work-dir {params.work_dir:q} --gpus {params.gpus:q} {params.options:q} {params.run:q}"
        " 2>&1 | tee -a {log.runner:q}.history > {log.runner:q}"


# train.import: a released checkpoint of the reference converted into final.pth instead of training (the file is
# read without running its code; every tensor mapped to the experiment's model or an error listing them)
if config["train"]["import"]:

    ruleorder: train_import > train

    rule train_import:
        input:
            unpack(train_import_inputs),
        output:
            "results/train/{experiment}/final.pth",
        log:
            "results/logs/train_import/{experiment}.log",
        wildcard_constraints:
            experiment=imported_experiments(),
        conda:
            "../../envs/mmdet.yaml"
        params:
            prompts=train_shard_args,
            options=train_import_options,
            run=run_config_args,
            num_base=num_base(),
        shell:
            "python -m pipeline.released --log {log:q} detector --checkpoint {input.checkpoint:q}"
            " --experiment={wildcards.experiment:q} --names-from {input.names:q} --num-base {params.num_base:q}"
            " {params.prompts:q} {params.options:q} {params.run:q} --output {output:q}"


rule train_predict:
    input:
        checkpoint="results/train/{experiment}/final.pth",
        annotations=predict_annotations(),
        images=image_dir(DATASET, "val"),
    output:
        detections="results/evaluate/{experiment}/detections.json",
        regions="results/evaluate/{experiment}/regions.npz",
    log:
        "results/logs/train_predict/{experiment}.log",
    conda:
        "../../envs/mmdet.yaml"
    resources:
        gpu=1,
    params:
        dry=dry_run_flag(),
        on_bad_image=config["on_bad_image"],
        max_pixels=config["max_image_pixels"],
    shell:
        "python -m pipeline.train --log {log:q} predict --checkpoint {input.checkpoint:q}"
        " --annotations {input.annotations:q} --images {input.images:q} --output {output.detections:q}"
        " --regions {output.regions:q} --on-bad-image {params.on_bad_image:q}"
        " --max-image-pixels {params.max_pixels:q} {params.dry:q}"
