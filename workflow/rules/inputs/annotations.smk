# Input functions and parameters of the annotations rules (workflow/rules/annotations.smk). No rules here.


def custom_annotations(wildcards):
    """The user's annotation file of the split (dataset custom)."""
    return custom_source(wildcards.split)


def custom_images(wildcards):
    """The user's image folder of the split (dataset custom)."""
    return image_dir("custom", wildcards.split)
