# Open-vocabulary annotation files (method section 2): ids remapped 0-based base-first.
# The all-class files (suffix all, 65 or 1203) hold every split class; the base files
# (suffix base, 48 or 866) keep all images and categories but only base annotations.
# dataset custom: the user's COCO-format files (config custom), checked at parse time and again here.


rule annotations_coco:
    input:
        coco_source,
    output:
        all="results/annotations/coco/instances_{split}2017.65.json",
        base="results/annotations/coco/instances_{split}2017.48.json",
    log:
        "results/logs/annotations_coco/{split}.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.annotations --log {log:q} coco --input {input:q}"
        " --out-all {output.all:q} --out-base {output.base:q}"


rule annotations_lvis:
    input:
        lvis_source,
    output:
        all="results/annotations/lvis/lvis_v1_{split}.1203.json",
        base="results/annotations/lvis/lvis_v1_{split}.866.json",
    log:
        "results/logs/annotations_lvis/{split}.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.annotations --log {log:q} lvis --input {input:q}"
        " --out-all {output.all:q} --out-base {output.base:q}"


rule annotations_lvis_extras:
    input:
        lvis_train_source,
    output:
        norare="results/annotations/lvis/lvis_v1_train.norare.json",
        cat_info="results/annotations/lvis/lvis_v1_train_cat_info.json",
    log:
        "results/logs/annotations_lvis_extras/train.log",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.annotations --log {log:q} lvis-extras --input {input:q}"
        " --out-norare {output.norare:q} --out-cat-info {output.cat_info:q}"


if DATASET == "demo":

    rule annotations_demo:
        input:
            "results/demo_data/annotations/instances_{split}.json",
        output:
            all="results/annotations/demo/{split}.all.json",
            base="results/annotations/demo/{split}.base.json",
        log:
            "results/logs/annotations_demo/{split}.log",
        conda:
            "../../envs/pipeline.yaml"
        params:
            base=repeated("--base", config["demo"]["base"]),
            novel=repeated("--novel", config["demo"]["novel"]),
        shell:
            "python -m pipeline.annotations --log {log:q} demo --input {input:q}"
            " --out-all {output.all:q} --out-base {output.base:q}"
            " {params.base:q} {params.novel:q}"

    rule annotations_demo_lvis:
        input:
            "results/demo_data/annotations/lvis_{split}.json",
        output:
            all="results/annotations/demo/lvis_{split}.all.json",
            base="results/annotations/demo/lvis_{split}.base.json",
        log:
            "results/logs/annotations_demo_lvis/{split}.log",
        conda:
            "../../envs/pipeline.yaml"
        shell:
            "python -m pipeline.annotations --log {log:q} lvis --input {input:q}"
            " --out-all {output.all:q} --out-base {output.base:q}"

    rule annotations_demo_lvis_extras:
        input:
            "results/demo_data/annotations/lvis_train.json",
        output:
            norare="results/annotations/demo/lvis_train.norare.json",
            cat_info="results/annotations/demo/lvis_train_cat_info.json",
        log:
            "results/logs/annotations_demo_lvis_extras/train.log",
        conda:
            "../../envs/pipeline.yaml"
        shell:
            "python -m pipeline.annotations --log {log:q} lvis-extras --input {input:q}"
            " --out-norare {output.norare:q} --out-cat-info {output.cat_info:q}"


if DATASET == "custom":

    rule annotations_custom:
        input:
            annotations=custom_annotations,
            images=custom_images,
        output:
            all="results/annotations/custom/{split}.all.json",
            base="results/annotations/custom/{split}.base.json",
        log:
            "results/logs/annotations_custom/{split}.log",
        conda:
            "../../envs/pipeline.yaml"
        params:
            novel=repeated("--novel", config["custom"]["novel"]),
            base=repeated("--base", config["custom"]["base"] or []),
        shell:
            "python -m pipeline.annotations --log {log:q} custom --input {input.annotations:q}"
            " --images {input.images:q} --split {wildcards.split:q}"
            " --out-all {output.all:q} --out-base {output.base:q}"
            " {params.novel:q} {params.base:q}"


rule annotations_min:
    input:
        "results/annotations/{dataset}/{stem}.json",
    output:
        "results/annotations/{dataset}/{stem}.min.json",
    log:
        "results/logs/annotations_min/{dataset}/{stem}.log",
    wildcard_constraints:
        stem="[^/]+",
    conda:
        "../../envs/pipeline.yaml"
    shell:
        "python -m pipeline.annotations --log {log:q} min --input {input:q} --output {output:q}"
