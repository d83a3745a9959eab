# OADP-Flow: open-vocabulary detection (OADP, CVPR 2023) as one Snakemake DAG.
#
# results/ layout (every path is written by exactly one rule family):
#   demo_data/images/{train,val}/*.jpg           generated demo images          (demo_data)
#   demo_data/annotations/{instances,lvis}_{train,val}.json                     (demo_data)
#   demo_data/captions/captions_{train,test}.json, captions/{train,test}/*.png  captioned crops (demo_data)
#   teacher/clip.pt, teacher/zeroshot.json        the demo's CLIP teacher         (teacher)
#   annotations/coco/instances_{train,val}2017.{48,65}.json, instances_val2017.65.min.json  (annotations)
#   annotations/lvis/lvis_v1_{train,val}.{866,1203}.json, lvis_v1_train.norare.json,
#                    lvis_v1_train_cat_info.json                                          (annotations)
#   annotations/demo/{train,val}.{base,all}.json, val.all.min.json, lvis_{train,val}.{base,all}.json,
#                    lvis_train.norare.json, lvis_train_cat_info.json                     (annotations)
#   annotations/custom/{train,val}.{base,all}.json, val.all.min.json  (dataset custom) (annotations)
#   prompts/{vild,detpro_lvis,mmovod_text,mmovod_vision_avg,mmovod_multimodal}.pth        (prompts)
#   proposals/{dataset}/rpn/final.pth, {folder}.h5, recall.json                           (proposals)
#   oake/{dataset}/{globals,blocks,objects}/{folder}/shard-{i:03d}.h5, verify.json       (oake)
#   train/{experiment}/final.pth; evaluate/{experiment}/{detections.json,regions.npz}     (train)
#   evaluate/{experiment}/{metrics,per_class_ap,pr_curves,open_ended}.json                (evaluate)
#   detect/{experiment}/{detections.json,pictures/,index.html}; export_instructcv/{source}/image_pairs_{part}/  (detect)
#   report/summary.{md,html}, front.html, ablation.csv, {pr_curves,per_class_ap,loss_curves,transfer}.png,
#          report/val_gallery.png                                                     (report)
#   logs/<rule>/...                               one log per job
#
# Default config = the embedded demo; real data: --configfile workflow/presets/ov_coco.yaml
# --config data_root=PATH (see README).

from snakemake.utils import min_version

min_version("9.0")


report: "workflow/report/workflow.rst"


# config.yaml and --configfile/--config layered, validated, defaults filled (README "Configuration")
include: "workflow/rules/config.smk"
include: "workflow/rules/common.smk"
include: "workflow/rules/inputs/demo_data.smk"
include: "workflow/rules/inputs/annotations.smk"
include: "workflow/rules/inputs/teacher.smk"
include: "workflow/rules/inputs/prompts.smk"
include: "workflow/rules/inputs/oake.smk"
include: "workflow/rules/inputs/proposals.smk"
include: "workflow/rules/inputs/train.smk"
include: "workflow/rules/inputs/evaluate.smk"
include: "workflow/rules/inputs/detect.smk"
include: "workflow/rules/inputs/plan.smk"
include: "workflow/rules/local_gpu.smk"


# the generated dataset and its CLIP teacher exist only for the demo
if DATASET == "demo":

    include: "workflow/rules/demo_data.smk"
    include: "workflow/rules/teacher.smk"


include: "workflow/rules/annotations.smk"
include: "workflow/rules/prompts.smk"
include: "workflow/rules/proposals.smk"
include: "workflow/rules/oake.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/detect.smk"
include: "workflow/rules/plan.smk"


rule all:
    default_target: True
    input:
        annotation_targets(),
        teacher_targets(),
        prompt_targets(),
        f"results/proposals/{DATASET}/recall.json",
        oake_targets(),
        detection_targets(),
        report_targets(),
        detect_targets(),
        export_instructcv_targets(),
