# Input functions and parameters of the demo_data rules (workflow/rules/demo_data.smk). No rules here.

# the generator's options per rule: a changed one reruns that rule (and, for the captions, the teacher)
DEMO_SCENE_KEYS = (
    "classes",
    "novel",
    "sizes",
    "objects",
    "num_train",
    "num_val",
    "crowd_prob",
    "novel_in_train",
    "seed",
)
DEMO_CAPTION_KEYS = (
    "classes",
    "novel",
    "seed",
    "captions_per_class",
    "caption_test_per_class",
)


def demo_args(keys):
    """The demo generator's options of ``keys`` (demo.<key>) as argv words: names one ``--classes=NAME`` word
    each, lists and numbers as ``--flag VALUE...``."""
    demo = config["demo"]
    args = []
    for key in keys:
        flag = "--" + key.replace("_", "-")
        value = demo[key]
        if key in ("classes", "novel"):
            args += repeated(flag, value)
        elif isinstance(value, list):
            args += [flag, *(str(v) for v in value)]
        else:
            args += [flag, str(value)]
    return args


def demo_out_dir(wildcards, output):
    """The generator's output root, derived from its declared outputs."""
    return str(Path(output.coco[0]).parent.parent)
