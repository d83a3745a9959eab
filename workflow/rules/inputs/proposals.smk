# Input functions and parameters of the proposals rules (workflow/rules/proposals.smk). No rules here.


def proposal_pickle(wildcards):
    """The configured reference pickle of a split (proposals.import)."""
    return config["proposals"]["import"][folder_split(wildcards.folder)]


def rpn_work_dir(wildcards, output):
    """The RPN's work dir (checkpoints for resume): a param, not an output, so a failed or requeued job keeps it."""
    return str(Path(output[0]).parent)
