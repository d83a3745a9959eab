rule demo_data:
    output:
        coco=expand(
            "results/demo_data/annotations/instances_{split}.json", split=SPLITS
        ),
        lvis=expand("results/demo_data/annotations/lvis_{split}.json", split=SPLITS),
        images=directory(expand("results/demo_data/images/{split}", split=SPLITS)),
        # captioned crops of every class, base and novel (the CLIP teacher's kind of data; its held-out test)
        captions=expand(
            "results/demo_data/captions/captions_{split}.json", split=["train", "test"]
        ),
        caption_images=directory(
            expand("results/demo_data/captions/{split}", split=["train", "test"])
        ),
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
        " --captions-per-class {params.opts[captions_per_class]}"
        " --caption-test-per-class {params.opts[caption_test_per_class]}"
        " --log {log}"
