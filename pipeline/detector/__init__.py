"""The Distillation Pyramid detector (method section 6): text-embedding classifiers, heads, losses, ensemble.

The pieces here are plain torch modules and functions with hand-checked tests; the mmdet 3 registration, the
RoI head/detector assembly and the configs build on them.
"""
