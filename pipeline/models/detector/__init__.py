"""The Distillation Pyramid detector (method section 6): text-embedding classifiers, heads, losses, ensemble.

The pieces here are plain torch modules and functions with hand-checked tests; the mmdet 3 registration, the
RoI head/detector assembly and the configs build on them.
"""


def register_modules() -> None:
    """Import the modules that register the pyramid's parts in mmdet's registries (and mmdet's own)."""
    from mmdet.utils import register_all_modules

    from pipeline.models import hooks  # noqa: F401  (accumulation and random-state hooks)
    from pipeline.models.detector import datasets, model, modules, roi_head, transforms  # noqa: F401

    register_all_modules()
