"""Write docs/configuration.md, the reference of every config key, from workflow/schemas/config.schema.yaml.

    python tools/config_reference.py            # rewrite the file
    python tools/config_reference.py --check    # exit 1 when the file is not what the schema gives

The demo's values (the project's config.yaml) are listed beside the defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
DEMO = ROOT / "config.yaml"
OUTPUT = ROOT / "docs/configuration.md"

HEADER = """# Configuration reference

Generated from `workflow/schemas/config.schema.yaml` by `python tools/config_reference.py` (a test checks that
it is current). Defaults are the real-data (reference) values; the demo column is what the project's
`config.yaml` (the embedded demo, read only for `dataset: demo`) sets instead. Layers, later ones win: schema
defaults < the project's `config.yaml` (demo only) < `config.yaml` of the working directory < `--configfile`
files < `--config KEY=VALUE`. Nested values on the command line: `--config 'oake={shards: 4}'`.

| key | type | default | demo | description |
|---|---|---|---|---|
"""


def _fmt(value) -> str:
    if value is None:
        return "null"
    return "`" + json.dumps(value) + "`" if not isinstance(value, str) else f"`{value}`"


def _type(prop: dict) -> str:
    kind = prop.get("type", "")
    kinds = kind if isinstance(kind, list) else [kind]
    text = " or ".join(k for k in kinds if k)
    if "enum" in prop:
        text = " \\| ".join(str(v) for v in prop["enum"])
    elif prop.get("items", {}).get("enum"):
        text = "list of " + " \\| ".join(prop["items"]["enum"])
    return text


def rows(schema: dict, demo: dict, prefix: str = ""):
    for key, prop in schema.get("properties", {}).items():
        name = prefix + key
        sub = demo.get(key) if isinstance(demo, dict) else None
        if prop.get("properties"):
            yield from rows(prop, sub if isinstance(sub, dict) else {}, name + ".")
            continue
        default = _fmt(prop["default"]) if "default" in prop else "(required)"
        shown = _fmt(sub) if isinstance(demo, dict) and key in demo else ""
        if isinstance(sub, list) and len(json.dumps(sub)) > 40:
            shown = f"{len(sub)} names"
        description = " ".join(str(prop.get("description", "")).split()).replace("|", "\\|")
        yield f"| `{name}` | {_type(prop)} | {default} | {shown} | {description} |"


def render() -> str:
    schema = yaml.safe_load(SCHEMA.read_text())
    demo = yaml.safe_load(DEMO.read_text()) or {}
    return HEADER + "\n".join(rows(schema, demo)) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.is_file() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is out of date: run python tools/config_reference.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
