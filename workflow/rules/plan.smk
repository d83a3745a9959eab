# The cost plan: `snakemake --cores 1 --force plan` writes results/plan/plan.json and prints per stage the work, the
# disk of each output and the time on plan.device (python -m pipeline.plan). It reads what exists, runs nothing
# else: no inputs, so it never triggers a job; --force makes it rerun when plan.json exists.


rule plan:
    output:
        "results/plan/plan.json",
    log:
        "results/logs/plan/plan.log",
    conda:
        "../../envs/mmdet.yaml"
    params:
        dataset=DATASET,
        splits=plan_splits(),
        expected=plan_expected(),
        model=config["clip"]["model"],
        kinds=plan_oake_folders(),
        variant_folders=repeated("--variant-folders", plan_variant_folders()),
        shards=config["oake"]["shards"],
        storage=config["oake"]["object_storage"],
        compression=config["oake"]["compression"],
        per_image=config["proposals"]["max_per_img"],
        rpn_epochs=config["proposals"]["epochs"],
        rpn_gpus=config["proposals"]["gpus"],
        rpn_batch=config["proposals"]["batch_size"],
        rpn_lr_batch=config["proposals"]["lr_batch"],
        rpn_mode=config["proposals"]["effective_batch"],
        runs=plan_runs(),
        run_options=plan_run_options(),
        gpus=config["train"]["gpus"],
        mode=config["train"]["effective_batch"],
        train=plan_train_args(),
        device=config["plan"]["device"],
    shell:
        "python -m pipeline.plan --log {log:q} --dataset {params.dataset:q} --splits {params.splits:q}"
        " {params.expected:q} --clip-model {params.model:q} --kinds {params.kinds:q} --shards {params.shards:q}"
        " {params.variant_folders:q}"
        " --object-storage {params.storage:q} --compression {params.compression:q}"
        " --objects-per-image {params.per_image:q} --rpn-epochs {params.rpn_epochs:q} --rpn-gpus {params.rpn_gpus:q}"
        " --rpn-batch-size {params.rpn_batch:q} --rpn-lr-batch {params.rpn_lr_batch:q}"
        " --rpn-effective-batch {params.rpn_mode:q} --experiments {params.runs:q}"
        " --experiment-options {params.run_options:q} --train-gpus {params.gpus:q}"
        " --train-effective-batch {params.mode:q} {params.train:q} --device {params.device:q} --output {output:q}"
