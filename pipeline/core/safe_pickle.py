"""Reading downloaded pickles without running them: a restricted unpickler and a TorchScript weights reader.

A pickle names the functions and classes it wants called while it is loaded, so an untrusted one can run any
code. :func:`restricted_loads` resolves only the names a caller allows (plus, optionally, inert
:class:`Placeholder` stand-ins for a family of class names) and refuses everything else before it is built.

:func:`torchscript_state_dict` reads the parameters and buffers of a TorchScript archive (``torch.jit.save``,
e.g. OpenAI's ``ViT-B-32.pt``) with it: ``data.pkl`` is unpickled with tensors rebuilt from the archive's
``data/`` records and every ``__torch__`` module as a placeholder, the archive's ``code/`` is parsed (never run)
for which attributes are parameters and buffers, and the module tree is flattened to the keys
``torch.jit.load(path).state_dict()`` gives. Nothing in the archive is executed.

torch is imported only by the torch readers, so numpy-only users stay light.
"""

from __future__ import annotations

import ast
import functools
import io
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

TORCH_PLACEHOLDER_MODULE = "__torch__"
_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}


class UnsafePickleError(ValueError):
    """A pickle that asks for something outside what its reader allows; nothing it names was run."""


class Placeholder:
    """Stands in for an object of a class the pickle names but that is never imported.

    It keeps what unpickling would have handed the real class: constructor ``args`` and the ``state`` that
    ``BUILD`` passes to ``__setstate__``. The class name is ``qualname`` on the per-name subclass.
    """

    qualname = ""

    def __new__(cls, *args: Any) -> Placeholder:
        obj = super().__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Restricted(pickle.Unpickler):
    def __init__(
        self,
        data: bytes,
        allowed: Mapping[tuple[str, str], Any],
        what: str,
        persistent_load: Callable[[Any], Any] | None,
        placeholder_module: str | None,
    ) -> None:
        super().__init__(io.BytesIO(data))
        self._allowed, self._what, self._persistent = allowed, what, persistent_load
        self._placeholder_module = placeholder_module
        self._classes: dict[str, type[Placeholder]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._allowed:
            return self._allowed[module, name]
        prefix = self._placeholder_module
        if prefix and (module == prefix or module.startswith(prefix + ".")):
            qualname = f"{module}.{name}"
            if qualname not in self._classes:
                self._classes[qualname] = type(name, (Placeholder,), {"qualname": qualname})
            return self._classes[qualname]
        raise UnsafePickleError(f"refers to {module}.{name}; {self._what} (nothing was run)")

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise UnsafePickleError(f"uses persistent ids; {self._what}")
        return self._persistent(pid)


def restricted_loads(
    data: bytes,
    allowed: Mapping[tuple[str, str], Any],
    what: str,
    persistent_load: Callable[[Any], Any] | None = None,
    placeholder_module: str | None = None,
) -> Any:
    """Unpickle ``data`` resolving only the ``(module, name)`` globals in ``allowed`` (to the given objects).

    Args:
        allowed: every global the pickle may use, mapped to the object it resolves to (a vetted function or
            class; nothing else is importable).
        what: what the format may hold, for the error (``"a proposals pickle may only hold numpy arrays"``).
        persistent_load: resolves persistent ids (torch storages); without it they are refused.
        placeholder_module: globals in this module or below become inert :class:`Placeholder` subclasses.

    Raises:
        UnsafePickleError: a global outside ``allowed`` (raised before anything it names is built).
    """
    return _Restricted(data, allowed, what, persistent_load, placeholder_module).load()


@functools.cache
def numpy_array_globals() -> Mapping[tuple[str, str], Any]:
    """The globals a pickle of numpy arrays needs (an object array's items still pass through the allowlist)."""
    import numpy as np

    reconstruct = np.ndarray.__reduce__(np.zeros(0))[0]
    return MappingProxyType(
        {
            ("numpy.core.multiarray", "_reconstruct"): reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
    )


# ------------------------------------------------------------------------------------------ torch archives


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """``torch._utils._rebuild_tensor_v2`` without hooks or metadata; the result does not require grad."""
    import torch

    if not isinstance(storage, torch.Tensor) or backward_hooks or metadata:
        raise UnsafePickleError("a tensor with hooks, metadata or a storage not read from the archive")
    return torch.empty(0, dtype=storage.dtype).set_(storage.untyped_storage(), offset, tuple(size), tuple(stride))


def _identity(value, *_type_tags):
    return value


class _Vetted:
    """A vetted function as a pickle sees it: callable, but a ``BUILD`` on it (which could reset the function's
    defaults for the whole process) is refused."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickleError(f"tries to modify {self._fn.__name__}")


@functools.cache
def torch_tensor_globals() -> Mapping[tuple[str, str], Any]:
    """Globals of a pickled tree of tensors (``torch.save`` / TorchScript ``data.pkl``), resolved to inert code.

    Storage classes resolve to their dtype (a persistent id carries one); TorchScript's list and type-tag
    helpers return their argument unchanged.
    """
    import torch

    allowed: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor_v2"): _Vetted(_rebuild_tensor),
        ("collections", "OrderedDict"): OrderedDict,
        ("torch.jit._pickle", "restore_type_tag"): _Vetted(_identity),
    }
    for kind in ("int", "double", "bool", "tensor", "generic"):
        allowed["torch.jit._pickle", f"build_{kind}list"] = _Vetted(_identity)
    for name, dtype in _STORAGE_DTYPES.items():
        allowed["torch", name] = getattr(torch, dtype)
    return MappingProxyType(allowed)


class _ArchiveStorages:
    """Resolves ``('storage', dtype, key, location, numel)`` ids to CPU tensors read from ``<prefix>/data/<key>``."""

    def __init__(self, zf: zipfile.ZipFile, prefix: str) -> None:
        self._zf, self._prefix, self._cache = zf, prefix, {}

    def __call__(self, pid: Any) -> Any:
        import torch

        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise UnsafePickleError(f"persistent id {str(pid)[:80]!r} is not a storage")
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, torch.dtype) or not isinstance(key, str) or not key.isalnum():
            raise UnsafePickleError(f"malformed storage id {str(pid)[:80]!r}")
        if key not in self._cache:
            raw = self._zf.read(f"{self._prefix}/data/{key}")
            expected = int(numel) * torch.empty(0, dtype=dtype).element_size()
            if len(raw) != expected:
                raise ValueError(f"storage {key} has {len(raw)} bytes, its id says {expected}")
            self._cache[key] = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        if self._cache[key].dtype != dtype:
            raise ValueError(f"storage {key} is read as both {self._cache[key].dtype} and {dtype}")
        return self._cache[key]


def _archive_prefix(zf: zipfile.ZipFile) -> str:
    roots = [n[: -len("/data.pkl")] for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(roots) != 1:
        raise ValueError(f"expected one <name>/data.pkl record, found {len(roots)}")
    byteorder = f"{roots[0]}/byteorder"
    if byteorder in zf.namelist() and zf.read(byteorder).strip() != b"little":
        raise ValueError("big-endian archives are not supported")
    return roots[0]


def read_torch_archive(
    zf: zipfile.ZipFile, what: str, placeholder_module: str | None = None, record: str = "data.pkl"
) -> Any:
    """Unpickle ``record`` of a torch zip archive (``torch.save`` or ``torch.jit.save``) with tensors only.

    Raises:
        UnsafePickleError: a global other than tensor rebuilding (or a placeholder module's class).
        ValueError: not a torch archive, or storages that do not match their ids.
    """
    prefix = _archive_prefix(zf)
    data = zf.read(f"{prefix}/{record}")
    return restricted_loads(data, torch_tensor_globals(), what, _ArchiveStorages(zf, prefix), placeholder_module)


# ------------------------------------------------------------------------------------------ TorchScript


@dataclass
class _ScriptClass:
    is_module: bool = False
    parameters: list[str] = field(default_factory=list)
    buffers: list[str] = field(default_factory=list)
    runs_code_on_load: bool = False


def _names(node: ast.expr) -> list[str]:
    if not isinstance(node, ast.List | ast.Tuple):
        return []
    return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def _script_classes(zf: zipfile.ZipFile, prefix: str) -> dict[str, _ScriptClass]:
    """Parse (never run) the archive's serialized TorchScript source: what each class declares."""
    classes: dict[str, _ScriptClass] = {}
    code_dir = f"{prefix}/code/"
    for name in zf.namelist():
        if not (name.startswith(code_dir) and name.endswith(".py")):
            continue
        module = name[len(code_dir) : -len(".py")].replace("/", ".")
        for node in ast.parse(zf.read(name).decode("utf-8")).body:
            if not isinstance(node, ast.ClassDef):
                continue
            info = classes[f"{module}.{node.name}"] = _ScriptClass()
            info.is_module = any(isinstance(b, ast.Name) and b.id == "Module" for b in node.bases)
            for item in node.body:
                if isinstance(item, ast.Assign) and len(item.targets) == 1 and isinstance(item.targets[0], ast.Name):
                    if item.targets[0].id == "__parameters__":
                        info.parameters = _names(item.value)
                    elif item.targets[0].id == "__buffers__":
                        info.buffers = _names(item.value)
                elif isinstance(item, ast.FunctionDef) and item.name == "__setstate__":
                    info.runs_code_on_load = True
    return classes


def _script_class(obj: Placeholder, classes: dict[str, _ScriptClass]) -> _ScriptClass | None:
    info = classes.get(obj.qualname)
    if info is not None and info.runs_code_on_load:
        raise UnsafePickleError(f"{obj.qualname} defines __setstate__, code that torch.jit.load would run")
    return info


def _flatten(obj: Placeholder, classes: dict[str, _ScriptClass], prefix: str, out: dict, ancestors: set) -> None:
    """Parameters, then buffers, then submodules (attribute order), as ``nn.Module.state_dict`` walks them."""
    import torch

    info = _script_class(obj, classes)
    if info is None or not info.is_module:
        raise UnsafePickleError(f"{obj.qualname} is not a module declared in the archive's code")
    if id(obj) in ancestors or not isinstance(obj.state, dict) or obj.args:
        raise UnsafePickleError(f"{obj.qualname} is not a plain module object")
    attrs = obj.state
    for names in (info.parameters, info.buffers):
        for name in (n for n in attrs if n in names and attrs[n] is not None):
            if not isinstance(attrs[name], torch.Tensor):
                raise UnsafePickleError(f"{prefix}{name} is a {type(attrs[name]).__name__}, not a tensor")
            out[prefix + name] = attrs[name]
    for name, value in attrs.items():
        kind = _script_class(value, classes) if isinstance(value, Placeholder) else None
        if kind is not None and kind.is_module:
            _flatten(value, classes, f"{prefix}{name}.", out, ancestors | {id(obj)})


def torchscript_state_dict(path: str | Path) -> dict[str, Any]:
    """The parameters and buffers of a TorchScript archive, keyed as ``torch.jit.load(path).state_dict()``.

    Raises:
        UnsafePickleError: ``data.pkl`` names anything but tensors and the archive's own module classes, or a
            module class defines ``__setstate__`` (code torch would run while loading). Nothing is run.
        ValueError: not a TorchScript archive, or one whose records are inconsistent.
    """
    with zipfile.ZipFile(path) as zf:
        prefix = _archive_prefix(zf)
        classes = _script_classes(zf, prefix)
        root = read_torch_archive(zf, "TorchScript weights may only hold tensors and modules", TORCH_PLACEHOLDER_MODULE)
    if not isinstance(root, Placeholder):
        raise ValueError(f"data.pkl holds a {type(root).__name__}, not a TorchScript module")
    out: dict[str, Any] = {}
    _flatten(root, classes, "", out, set())
    return out
