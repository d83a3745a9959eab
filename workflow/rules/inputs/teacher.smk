# Input functions and parameters of the teacher rules (workflow/rules/teacher.smk). No rules here.


def teacher_budget(wildcards):
    """The teacher's budget as arguments: steps (reproducible) and/or seconds, whichever ends first;
    dry_run: --dry-run (the stage caps the steps, pipeline.core.dry_run)."""
    t = config["teacher"]
    steps = t["steps"]
    args = ([] if steps is None else ["--steps", str(steps)]) + dry_run_flag()
    if t["seconds"] is not None:
        args += ["--seconds", str(t["seconds"])]
    return args
