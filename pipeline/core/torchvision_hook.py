"""Runs :func:`pipeline.core.compat.ensure_torchvision_ops` right before torchvision is first imported.

``pipeline/__init__.py`` calls :func:`install`, which puts a finder first on ``sys.meta_path`` and imports nothing
heavy: a stage's ``--help`` or a Snakefile that reads the project's config helpers never loads torch. The first
``import torchvision`` anywhere (open_clip, mmengine's runner, the project's own code) reaches the finder: before the
package exists, :mod:`pipeline.core.compat` registers the pure-torch ``torchvision::nms`` kernel where
torchvision's compiled ops cannot load (torchvision's ``_meta_registrations`` fails without it); once the package
has run, :func:`pipeline.core.compat.after_torchvision_import` lets ``torchvision.ops.nms`` use that kernel, and
the finder removes itself.
"""

from __future__ import annotations

import importlib.abc
import sys


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    """Answers only for ``torchvision``: applies the shim, then returns the spec the other finders give, its loader
    taking this finder off ``sys.meta_path`` once the package has run (a ``find_spec`` without an import, as
    ``importlib.util.find_spec`` does, leaves it in place)."""

    def __init__(self) -> None:
        self._busy = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision" or self._busy:
            return None
        from pipeline.core import compat

        self._busy = True  # the shim's own probe looks torchvision up
        try:
            compat.ensure_torchvision_ops()  # before the module exists: idempotent, harmless without an import
            spec = self._other_finders_spec(fullname, path, target)
        finally:
            self._busy = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run_package = spec.loader.exec_module

        def exec_module(module):
            run_package(module)
            uninstall()
            compat.after_torchvision_import()

        spec.loader.exec_module = exec_module  # this spec's loader only
        return spec

    def _other_finders_spec(self, fullname, path, target):
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                return spec
        return None


_FINDER = _BeforeTorchvision()


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once); where torchvision is already imported, apply the shim now
    (it warns when torchvision's nms cannot work)."""
    if "torchvision" in sys.modules:
        from pipeline.core import compat

        compat.ensure_torchvision_ops()
        return
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def uninstall() -> None:
    """Take the finder off ``sys.meta_path`` (a no-op when it is not there)."""
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
