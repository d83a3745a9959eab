rule demo_data:
    output:
        coco=expand(
            "results/demo_data/annotations/instances_{split}.json", split=SPLITS
        ),
        lvis=expand("results/demo_data/annotations/lvis_{split}.json", split=SPLITS),
        images=directory(expand("results/demo_data/images/{split}", split=SPLITS)),
    log:
        "results/logs/demo_data/demo_data.log",
    conda:
        "../../envs/pipeline.yaml"
    params:
        out_dir=demo_out_dir,
        opts=demo_options(),
    shell:
        "python -m pipeline.demo_data --out-dir {params.out_dir}"
        " --classes {params.opts[classes]:q} --novel {params.opts[novel]:q}"
        " --sizes {params.opts[sizes]} --objects {params.opts[objects]}"
        " --num-train {params.opts[num_train]} --num-val {params.opts[num_val]}"
        " --crowd-prob {params.opts[crowd_prob]} --seed {params.opts[seed]}"
        " --log {log}"
