# Input functions and parameters of the prompts rules (workflow/rules/prompts.smk). No rules here.


def prompt_vocab_files(wildcards):
    """Annotation files whose class names form the vild vocabulary."""
    datasets = [DATASET] + [d for d in config["prompts"]["vocab_from"] if d != DATASET]
    return [all_classes_file(d, "val") for d in datasets]


def optional_path(section, key):
    """A configured input file, or no input (then its job is never requested; checked at parse time)."""
    return config[section][key] or []


def prompt_targets():
    names = {
        "vild": "vild",
        "ml": "ml",
        "detpro": "detpro_lvis",
        "mmovod_text": "mmovod_text",
        "mmovod_vision_avg": "mmovod_vision_avg",
        "mmovod_multimodal": "mmovod_multimodal",
    }
    return [f"results/prompts/{names[k]}.pth" for k in config["prompts"]["kinds"]]


def prompt_imports():
    """The prompt files taken from the reference's files (prompts.import) instead of being built."""
    return [name for name, path in config["prompts"]["import"].items() if path]


def imported_prompt(wildcards):
    """The reference's prompt file of one name (prompts.import.<name>)."""
    return config["prompts"]["import"][wildcards.name]


def imported_prompt_vocab(wildcards):
    """The annotation files whose class names an imported prompt must hold: those of the file it replaces."""
    if wildcards.name == "vild":
        return prompt_vocab_files(wildcards)
    return [all_classes_file(DATASET, "val")]
