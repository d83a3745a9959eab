"""OADP-Flow: the stages of the OADP open-vocabulary detection pipeline.

Importing the package installs :mod:`pipeline.core.torchvision_hook` (nothing heavy is imported): the first
``import torchvision`` in the process then goes through :mod:`pipeline.core.compat`, which makes torchvision
importable on the CPU torch.
"""

from pipeline.core import torchvision_hook as _torchvision_hook

_torchvision_hook.install()

__version__ = "0.1.0"
