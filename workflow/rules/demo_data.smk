


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
        "python -m pipeline.demo_data --out-dir {params.out_dir:q}"
        " --classes {params.opts[classes]:q} --novel {params.opts[novel]:q}"
        " --sizes {params.opts[sizes]} --objects {params.opts[objects]}"
        " --num-train {params.opts[num_train]} --num-val {params.opts[num_val]}"
        " --crowd-prob {params.opts[crowd_prob]} --novel-in-train {params.opts[novel_in_train]}"
        " --seed {params.opts[seed]}"
        " --log {log:q}"


# Captioned crops of every class, base and novel (the CLIP teacher's kind of data; "test" is its held-out
# zero-shot set). A rule of their own: they depend on the classes and the seed only, so changing the scene
# settings (image counts, sizes) neither rewrites them nor retrains the teacher.
rule demo_captions:
    output:
        captions=expand(
            "results/demo_data/captions/captions_{split}.json", split=["train", "test"]
        ),
        images=directory(
            expand("results/demo_data/captions/{split}", split=["train", "test"])
        ),
    log:
        "results/logs/demo_data/demo_captions.log",
    conda:
        "../../envs/pipeline.yaml"
    params:
        out_dir=lambda wildcards, output: str(Path(output.captions[0]).parent.parent),
        # only what the crops depend on: a changed param reruns the rule (and so the teacher)
        opts={
            k: v
            for k, v in demo_options().items()
            if k
            in (
                "classes",
                "novel",
                "seed",
                "captions_per_class",
                "caption_test_per_class",
            )
        },
    shell:
        "python -m pipeline.demo_data --out-dir {params.out_dir:q} --captions-only"
        " --classes {params.opts[classes]:q} --novel {params.opts[novel]:q} --seed {params.opts[seed]}"
        " --captions-per-class {params.opts[captions_per_class]}"
        " --caption-test-per-class {params.opts[caption_test_per_class]}"
        " --log {log:q}"
