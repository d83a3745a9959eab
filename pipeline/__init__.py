"""OADP-Flow: the stages of the OADP open-vocabulary detection pipeline.

``pipeline.core.compat`` is imported first: it makes torchvision importable on the CPU torch (see its docstring).
"""

from pipeline.core import compat as _compat  # noqa: F401  (must run before anything imports torchvision)

__version__ = "0.1.0"
