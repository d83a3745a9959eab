# A trained experiment with any vocabulary on any images (detect), and detection image pairs with instructions in
# InstructCV's layout (export_instructcv). Config: detect.*, export_instructcv.*; inputs in inputs/detect.smk.


# The images are passed as the configured paths (files or folders), after "--" with the checkpoint: a path that
# begins with "-" stays a path. The rule's inputs are the folders holding them, so that a folder made by another
# rule (the demo's val images) is built first. With detect.checkpoint the job reads that file as it is and plans
# no training (inputs/detect.smk, detect_checkpoint).
rule detect:
    input:
        unpack(detect_inputs),
    output:
        detections="results/detect/{experiment}/detections.json",
        pictures=directory("results/detect/{experiment}/pictures"),
        index="results/detect/{experiment}/index.html",
    log:
        "results/logs/detect/{experiment}.log",
    benchmark:
        "results/benchmarks/detect/{experiment}.tsv"
    conda:
        "../../envs/mmdet.yaml"
    resources:
        gpu=1,
    params:
        vocabulary=detect_vocabulary_arg,
        clip=detect_clip_args,
        score_thr=config["detect"]["score_thr"],
        max_drawn=config["detect"]["max_drawn"],
        max_images=(
            ["--max-images", str(config["detect"]["max_images"])]
            if config["detect"]["max_images"]
            else []
        ),
        on_bad_image=config["on_bad_image"],
        max_pixels=config["max_image_pixels"],
        out_dir=lambda wildcards, output: str(Path(output.detections).parent),
        images=config["detect"]["images"],
    shell:
        "python -m pipeline.detect --log {log:q} {params.vocabulary:q} {params.clip:q}"
        " --score-thr {params.score_thr:q} --max-drawn {params.max_drawn:q} {params.max_images:q}"
        " --on-bad-image {params.on_bad_image:q} --max-image-pixels {params.max_pixels:q}"
        " --out-dir {params.out_dir:q} -- {input.checkpoint:q} {params.images:q}"


rule export_instructcv:
    input:
        unpack(export_instructcv_inputs),
    output:
        directory("results/export_instructcv/{source}/image_pairs_{part}"),
    log:
        "results/logs/export_instructcv/{source}.{part}.log",
    conda:
        "../../envs/pipeline.yaml"
    params:
        detections=export_instructcv_detections_args,
        score_thr=config["export_instructcv"]["score_thr"],
        templates=repeated("--templates", config["export_instructcv"]["templates"]),
        seed=config["export_instructcv"]["seed"],
        on_bad_image=config["on_bad_image"],
        max_pixels=config["max_image_pixels"],
    shell:
        "python -m pipeline.export_instructcv --log {log:q} --annotations {input.annotations:q}"
        " --images {input.images:q} {params.detections:q} --score-thr {params.score_thr:q}"
        " {params.templates:q} --seed {params.seed:q}"
        " --on-bad-image {params.on_bad_image:q} --max-image-pixels {params.max_pixels:q} --out-dir {output:q}"
