# Input functions and parameters of the proposals rules (workflow/rules/proposals.smk). No rules here.


def proposal_pickle(wildcards):
    """The configured reference pickle of a split (proposals.import)."""
    return config["proposals"]["import"][folder_split(wildcards.folder)]


def rpn_work_dir(wildcards, output):
    """The RPN's work dir (checkpoints for resume): a param, not an output, so a failed or requeued job keeps it."""
    return str(Path(output[0]).parent)


def rpn_init_weights(wildcards):
    """The file the RPN starts from (the PATH of proposals.backbone_init; none for random)."""
    return PRETRAINED.get("proposals.backbone_init") or []


def rpn_backbone_init(wildcards, input):
    """proposals.backbone_init with its PATH taken from the rule's input ``weights``: random, torchvision:PATH or
    detector:PATH."""
    kind = config["proposals"]["backbone_init"].split(":", 1)[0]
    return f"{kind}:{input.weights}" if input.weights else kind
