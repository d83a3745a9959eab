# Class-agnostic proposals (method section 4): an RPN trained on base boxes only, or the reference's
# pickles imported safely; results/proposals/{dataset}/{folder}.h5 feeds OAKE objects.


if config["proposals"]["import"]:

    rule proposals_import:
        input:
            pickle=proposal_pickle,
            annotations=oake_source,
        output:
            "results/proposals/{dataset}/{folder}.h5",
        log:
            "results/logs/proposals_import/{dataset}/{folder}.log",
        conda:
            "../../envs/mmdet.yaml"
        shell:
            "python -m pipeline.proposals --log {log:q} import --pickle {input.pickle:q}"
            " --annotations {input.annotations:q} --output {output:q}"

else:

    rule proposals_train:
        input:
            annotations=base_file(DATASET, "train"),
            images=image_dir(DATASET, "train"),
            weights=rpn_init_weights,
        output:
            "results/proposals/{dataset}/rpn/final.pth",
        log:
            main="results/logs/proposals_train/{dataset}.log",
            runner="results/logs/proposals_train/{dataset}.runner.log",
        benchmark:
            "results/benchmarks/proposals_train/{dataset}.tsv"
        conda:
            "../../envs/mmdet.yaml"
        resources:
            gpu=config["proposals"]["gpus"],
        params:
            work_dir=rpn_work_dir,
            arch=config["proposals"]["arch"],
            depth=config["proposals"]["depth"],
            backbone_init=rpn_backbone_init,
            epochs=config["proposals"]["epochs"],
            iters=(
                ["--iters", str(config["proposals"]["iters"])]
                if config["proposals"]["iters"]
                else []
            ),
            steps=config["proposals"]["steps"],
            batch_size=config["proposals"]["batch_size"],
            lr=config["proposals"]["lr"],
            lr_batch=config["proposals"]["lr_batch"],
            effective_batch=config["proposals"]["effective_batch"],
            scale=config["proposals"]["scale"],
            gpus=config["proposals"]["gpus"],
            dry=dry_run_flag(),
        shell:
            "python -m pipeline.proposals --log {log.main:q} train --annotations {input.annotations:q}"
            " --images {input.images:q} --work-dir {params.work_dir:q} --arch {params.arch:q}"
            " --depth {params.depth:q}"
            " --backbone-init {params.backbone_init:q} --epochs {params.epochs:q} {params.iters:q}"
            " --steps {params.steps:q} --batch-size {params.batch_size:q} --lr {params.lr:q}"
            " --lr-batch {params.lr_batch:q} --effective-batch {params.effective_batch:q}"
            " --scale {params.scale:q}"
            " --gpus {params.gpus:q}"
            " {params.dry:q} > {log.runner:q} 2>&1"

    rule proposals_predict:
        input:
            checkpoint="results/proposals/{dataset}/rpn/final.pth",
            annotations=oake_source,
            images=oake_images,
        output:
            "results/proposals/{dataset}/{folder}.h5",
        log:
            "results/logs/proposals_predict/{dataset}/{folder}.log",
        benchmark:
            "results/benchmarks/proposals_predict/{dataset}/{folder}.tsv"
        conda:
            "../../envs/mmdet.yaml"
        resources:
            gpu=1,
        params:
            max_per_img=config["proposals"]["max_per_img"],
            on_bad_image=config["on_bad_image"],
            max_pixels=config["max_image_pixels"],
            dry=dry_run_flag(),
        shell:
            "python -m pipeline.proposals --log {log:q} predict --checkpoint {input.checkpoint:q}"
            " --annotations {input.annotations:q} --images {input.images:q}"
            " --max-per-img {params.max_per_img:q} --on-bad-image {params.on_bad_image:q}"
            " --max-image-pixels {params.max_pixels:q}"
            " {params.dry:q} --output {output:q}"


rule proposals_recall:
    input:
        proposals=f"results/proposals/{{dataset}}/{OAKE_FOLDERS[1]}.h5",
        annotations=all_classes_file(DATASET, "val"),
    output:
        "results/proposals/{dataset}/recall.json",
    log:
        "results/logs/proposals_recall/{dataset}.log",
    conda:
        "../../envs/mmdet.yaml"
    params:
        num_base=num_base(),
        dry=dry_run_flag(),
    shell:
        "python -m pipeline.proposals --log {log:q} recall --proposals {input.proposals:q}"
        " --annotations {input.annotations:q} --num-base {params.num_base:q} {params.dry:q}"
        " --output {output:q}"
