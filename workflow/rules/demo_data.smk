


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
        args=demo_args(DEMO_SCENE_KEYS),
    shell:
        "python -m pipeline.demo_data --out-dir {params.out_dir:q} {params.args:q} --log {log:q}"


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
        args=demo_args(DEMO_CAPTION_KEYS),
    shell:
        "python -m pipeline.demo_data --out-dir {params.out_dir:q} --captions-only {params.args:q}"
        " --log {log:q}"
