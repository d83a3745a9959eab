# The demo's CLIP teacher: a tiny CLIP pretrained contrastively on captioned crops of every demo
# class, base and novel. `clip.weights: teacher` points every CLIP consumer (prompts, OAKE) at its checkpoint,
# loaded like real weights. The checkpoint is protected: reruns of later stages reuse it (`snakemake teacher
# --force` after `chmod u+w results/teacher/clip.pt` retrains it).


rule teacher:
    input:
        captions="results/demo_data/captions/captions_test.json",
    output:
        checkpoint=protected(TEACHER_CHECKPOINT),
        zeroshot=report(
            "results/teacher/zeroshot.json",
            caption="../report/teacher.rst",
            category="Teacher",
        ),
    log:
        "results/logs/teacher/teacher.log",
    benchmark:
        "results/benchmarks/teacher.tsv"
    conda:
        "../../envs/clip.yaml"
    threads: 2
    params:
        classes=repeated("--classes", config["demo"]["classes"]),
        novel=repeated("--novel", config["demo"]["novel"]),
        model=config["clip"]["model"],
        budget=teacher_budget,
        seed=config["teacher"]["seed"],
        batch_size=config["teacher"]["batch_size"],
        lr=config["teacher"]["lr"],
    shell:
        "python -m pipeline.teacher {params.classes:q} {params.novel:q}"
        " --model {params.model:q} --seed {params.seed:q} {params.budget:q}"
        " --batch-size {params.batch_size:q} --lr {params.lr:q} --threads {threads:q}"
        " --captions-test {input.captions:q}"
        " --output {output.checkpoint:q} --zeroshot {output.zeroshot:q} --log {log:q}"
