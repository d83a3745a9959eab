# Detector training (method section 6) and inference: results/train/{experiment}/final.pth and
# COCO-format detections results/evaluate/{experiment}/detections.json for the evaluation stage.


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
    conda:
        "../../envs/mmdet.yaml"
    resources:
        gpu=config["train"]["gpus"],
    params:
        work_dir=train_work_dir,
        extra=train_shard_args,
        t=config["train"],
        num_base=num_base(),
        dry="--dry-run" if config["dry_run"] else "",
    shell:
        "python -m pipeline.train --log {log.main} fit --experiment {wildcards.experiment}"
        " --names-from {input.names} --num-base {params.num_base}"
        " --annotations {input.annotations} --images {input.images} --prompts {input.prompts}"
        " {params.extra} --work-dir {params.work_dir}"
        " --depth {params.t[depth]} --scale {params.t[scale]} --iters {params.t[iters]}"
        " --batch-size {params.t[batch_size]} --lr {params.t[lr]} --rpn-pre {params.t[rpn_pre]}"
        " --rpn-post {params.t[rpn_post]} --rois {params.t[rois]} --rpn-test {params.t[rpn_test]}"
        " --sampling-ratio {params.t[sampling_ratio]} --gpus {params.t[gpus]} {params.dry}"
        " > {log.runner} 2>&1"


rule train_predict:
    input:
        checkpoint="results/train/{experiment}/final.pth",
        annotations=all_classes_file(DATASET, "val"),
        images=image_dir(DATASET, "val"),
    output:
        "results/evaluate/{experiment}/detections.json",
    log:
        "results/logs/train_predict/{experiment}.log",
    conda:
        "../../envs/mmdet.yaml"
    resources:
        gpu=1,
    params:
        dry="--dry-run" if config["dry_run"] else "",
    shell:
        "python -m pipeline.train --log {log} predict --checkpoint {input.checkpoint}"
        " --annotations {input.annotations} --images {input.images} --output {output} {params.dry}"
