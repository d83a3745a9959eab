# Evaluation (method section 7) and the report: results/evaluate/{experiment}/metrics.json (+ per-class AP,
# precision-recall curves, open-ended accuracy) and results/report/summary.md with plots. {experiment} is a run:
# an experiment E or one of its seed runs E+seedN (train.seeds); the report groups them by experiment.


rule evaluate:
    input:
        unpack(evaluate_inputs),
        detections="results/evaluate/{experiment}/detections.json",
        regions="results/evaluate/{experiment}/regions.npz",
        vocab="results/prompts/vild.pth",
    output:
        metrics=report(
            "results/evaluate/{experiment}/metrics.json",
            caption="../report/metrics.rst",
            category="Evaluation",
            subcategory="{experiment}",
        ),
        per_class_csv="results/evaluate/{experiment}/per_class_ap.csv",
        per_class_json="results/evaluate/{experiment}/per_class_ap.json",
        pr_curves="results/evaluate/{experiment}/pr_curves.json",
        open_ended="results/evaluate/{experiment}/open_ended.json",
    log:
        "results/logs/evaluate/{experiment}.log",
    benchmark:
        "results/benchmarks/evaluate/{experiment}.tsv"
    conda:
        "../../envs/pipeline.yaml"
    params:
        args=evaluate_args,
        out_dir=lambda wildcards, output: str(Path(output.metrics).parent),
        dry=dry_run_flag(),
    shell:
        "python -m pipeline.evaluate --log {log:q} --detections {input.detections:q}"
        " --out-dir {params.out_dir:q} {params.args:q}"
        " --regions {input.regions:q} --vocab {input.vocab:q} {params.dry:q}"


rule report:
    input:
        metrics=expand(
            "results/evaluate/{experiment}/metrics.json",
            experiment=experiment_runs(),
        ),
        curves=expand(
            "results/evaluate/{experiment}/pr_curves.json",
            experiment=experiment_runs(),
        ),
        checkpoints=expand(
            "results/train/{experiment}/final.pth", experiment=experiment_runs()
        ),
        recall=f"results/proposals/{DATASET}/recall.json",
        teacher=teacher_targets(),
        detect=detect_targets(),
        detections=expand(
            "results/evaluate/{experiment}/detections.json",
            experiment=experiment_runs(),
        ),
        val_annotations=predict_annotations(),
        val_images=image_dir(DATASET, "val"),
    output:
        summary=report(
            "results/report/summary.md",
            caption="../report/summary.rst",
            category="Summary",
        ),
        html=report(
            "results/report/summary.html",
            caption="../report/summary_html.rst",
            category="Summary",
            labels={"view": "summary table (inline)"},
        ),
        gallery=report(
            "results/report/val_gallery.png",
            caption="../report/val_gallery.rst",
            category="Val gallery",
        ),
        front="results/report/front.html",
        ablation="results/report/ablation.csv",
        pr=report(
            "results/report/pr_curves.png",
            caption="../report/pr_curves.rst",
            category="Evaluation",
        ),
        per_class=report(
            "results/report/per_class_ap.png",
            caption="../report/per_class_ap.rst",
            category="Evaluation",
        ),
        losses=report(
            "results/report/loss_curves.png",
            caption="../report/loss_curves.rst",
            category="Training",
        ),
        transfer=report(
            "results/report/transfer.png",
            caption="../report/transfer.rst",
            category="Summary",
        ),
    log:
        "results/logs/report/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    conda:
        "../../envs/pipeline.yaml"
    params:
        experiments=experiment_runs(),
        num_base=num_base(),
        teacher=lambda wildcards, input: (
            ["--teacher", *input.teacher] if input.teacher else []
        ),
        detect=lambda wildcards, input: (
            ["--detect-dir", str(Path(input.detect[0]).parent)] if input.detect else []
        ),
        variants=report_variants(),
    shell:
        "python -m pipeline.report --log {log:q} --experiments {params.experiments:q}"
        " {params.teacher:q} {params.detect:q}"
        " --evaluate-dir results/evaluate --train-dir results/train --recall {input.recall:q}"
        " --benchmarks-dir results/benchmarks --bench-dir results/bench --variants={params.variants:q}"
        " --out-dir results/report --val-annotations {input.val_annotations:q}"
        " --val-images {input.val_images:q} --num-base {params.num_base:q}"
