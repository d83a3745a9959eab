# Input functions and parameters of the demo_data rules (workflow/rules/demo_data.smk). No rules here.


def demo_options():
    """The demo generator's options as CLI arguments (a config change reruns the generator)."""
    demo = config["demo"]
    return {
        "classes": demo["classes"],
        "novel": demo["novel"],
        "sizes": demo["sizes"],
        "objects": demo["objects"],
        "num_train": demo["num_train"],
        "num_val": demo["num_val"],
        "crowd_prob": demo["crowd_prob"],
        "novel_in_train": demo["novel_in_train"],
        "seed": demo["seed"],
        "captions_per_class": demo["captions_per_class"],
        "caption_test_per_class": demo["caption_test_per_class"],
    }


def demo_out_dir(wildcards, output):
    """The generator's output root, derived from its declared outputs."""
    return str(Path(output.coco[0]).parent.parent)
