"""The run's configuration, built from its layers (read by the Snakefile at parse time; no Snakemake import).

Layers, later ones win, nested mappings merged key by key:

1. the defaults of ``workflow/schemas/config.schema.yaml`` (real-data values; filled in last by validation);
2. the project's ``config.yaml``: the embedded demo. It applies only while no later layer names another dataset:
   a preset that says ``dataset: coco`` starts from the schema's defaults, never from the demo's values;
3. ``config.yaml`` of the working directory (``--directory``), when that is not the project's own file;
4. ``--configfile`` files in order, then ``--config KEY=VALUE`` (Snakemake merges these two before the Snakefile
   runs). ``--config`` values typed as text (``--config 'oake={shards: 4}'`` gives the string ``'4'``) are read
   as YAML where the schema asks for a number, boolean or null.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message names the file or key."""


def load_yaml(path: str | Path) -> dict:
    """A YAML mapping from ``path``; unreadable, binary or non-mapping files raise :class:`ConfigError`."""
    where = f"config file {Path(path).resolve()}"
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not a UTF-8 text file (invalid byte at offset {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: needs config keys at top level, found a {type(data).__name__}")
    return data


def merge(base: Mapping, update: Mapping) -> dict:
    """``update`` over ``base``, mappings merged recursively (a copy; neither argument changes)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _types(prop: Mapping) -> set[str]:
    kind = prop.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def coerce(value: Any, prop: Mapping) -> Any:
    """``value`` with strings read as YAML where the schema property ``prop`` wants no string, and ``null`` read as
    None where it also allows null (``--config 'train={load_from: null}'``), recursively."""
    if isinstance(value, dict):
        props = prop.get("properties", {})
        return {k: coerce(v, props.get(k, {})) for k, v in value.items()}
    if isinstance(value, list):
        items = prop.get("items", {})
        return [coerce(v, items) for v in value]
    types = _types(prop)
    if value == "null" and "null" in types:
        return None
    if isinstance(value, str) and types and "string" not in types:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if not isinstance(parsed, str):
            return parsed
    return value


def layered(cli: Mapping, project_file: str | Path, workdir_file: str | Path | None, schema: Mapping) -> dict:
    """The configuration before schema defaults: project ``config.yaml`` (see the module docstring), the working
    directory's ``config.yaml`` (``None`` or the project's own file: skipped) and the command-line layers ``cli``."""
    project_file = Path(project_file)
    project = load_yaml(project_file) if project_file.is_file() else {}
    local: dict = {}
    if workdir_file is not None:
        workdir_file = Path(workdir_file)
        if workdir_file.is_file() and workdir_file.resolve() != project_file.resolve():
            local = load_yaml(workdir_file)
    cli = coerce(dict(cli), schema)
    on_top = merge(local, cli)
    config = on_top
    if "dataset" not in on_top or on_top["dataset"] == project.get("dataset", "demo"):
        config = merge(project, on_top)
    return config
