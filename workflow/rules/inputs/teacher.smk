# Input functions and parameters of the teacher rules (workflow/rules/teacher.smk). No rules here.


def teacher_budget(wildcards):
    """The teacher's budget as arguments: steps (reproducible) and/or seconds, whichever ends first;
    dry_run: at most 20 steps."""
    t = config["teacher"]
    steps = t["steps"]
    if config["dry_run"]:
        steps = min(steps or 20, 20)
    args = [] if steps is None else ["--steps", str(steps)]
    if t["seconds"] is not None:
        args += ["--seconds", str(t["seconds"])]
    return " ".join(args)
