"""The README's outputs table says what the rules write: every rule of the demo's workflow has a row, every output a
rule declares matches a path of its row, and every path of a row is an output of one of the row's rules."""

from __future__ import annotations

import re
import shutil
from fnmatch import fnmatchcase

import pytest

from tests.conftest import REPO


def readme_outputs() -> list[tuple[list[str], list[str]]]:
    """The rows of README's outputs table: (rule names, paths under results/), code spans with a ``/`` as paths."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Outputs\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        rules_cell, paths_cell = line.strip("|").split("|", 1)
        rules = re.findall(r"`([^`]+)`", rules_cell)
        paths = [p for p in re.findall(r"`([^`]+)`", paths_cell) if "/" in p]
        rows.append((rules, paths))
    return rows


def _pattern(path: str) -> str:
    """A README path as a glob: every ``{...}`` is any text, a trailing ``/`` (a folder) dropped."""
    return re.sub(r"\{[^}]*\}", "*", path.rstrip("/"))


def _declared(path: str) -> str:
    """A declared output relative to results/: a wildcard with a literal constraint is that literal (``(?:)``: empty),
    any other wildcard a placeholder."""

    def value(m: re.Match) -> str:
        constraint = m.group(2)
        if constraint == "(?:)":
            return ""
        if constraint and re.fullmatch(r"[A-Za-z0-9_]+", constraint):
            return constraint
        return "W"

    return re.sub(r"\{(\w+)(?:,((?:[^{}]|\{[^}]*\})*))?\}", value, str(path)).removeprefix("results/")


@pytest.fixture(scope="module")
def declared_outputs(tmp_path_factory) -> dict[str, list[str]]:
    """Rule -> its declared outputs, from the workflow Snakemake parses with the demo's config."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings, StorageSettings

    workdir = tmp_path_factory.mktemp("readme_outputs")
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(), config_settings=ConfigSettings(), storage_settings=StorageSettings(),
            snakefile=REPO / "Snakefile", workdir=workdir,
        )  # fmt: skip
        workflow.dag(DAGSettings())
        return {r.name: [_declared(o) for o in r.output] for r in workflow._workflow.rules if r.name != "all"}


@pytest.mark.slow
def test_readme_outputs_table_matches_the_rules(declared_outputs):
    rows = readme_outputs()
    assert rows, "README has no outputs table"
    named = [rule for rules, _ in rows for rule in rules]
    missing = sorted(set(declared_outputs) - set(named))
    assert not missing, f"rules without a row in README's outputs table: {missing}"
    for rules, paths in rows:
        present = [r for r in rules if r in declared_outputs]  # a rule of other configs (oake_import) is skipped
        outputs = [o for r in present for o in declared_outputs[r]]
        patterns = [_pattern(p) for p in paths]
        for rule in present:
            for output in declared_outputs[rule]:
                assert any(fnmatchcase(output, p) for p in patterns), (
                    f"{rule} writes {output}, not in its README row {paths}"
                )
        for path, pattern in zip(paths, patterns, strict=True):
            assert not present or any(fnmatchcase(o, pattern) for o in outputs), (
                f"README row {rules}: {path} is no declared output of these rules"
            )


def test_declared_outputs_are_read_with_their_wildcards():
    assert _declared("results/oake/{dataset,demo|coco}/{kind,globals}{variant,(?:)}/{folder,train|val}/x.h5") == (
        "oake/W/globals/W/x.h5"
    )
    assert _declared("results/oake/{dataset}/{kind,objects}{variant,(-[a-z0-9_]+)*}/s-{shard,[0-9]{3}}.h5") == (
        "oake/W/objectsW/s-W.h5"
    )
    assert fnmatchcase("oake/W/objectsW/s-W.h5", _pattern("oake/{dataset}/{globals,objects}{variant}/s-{i:03d}.h5"))
    assert not fnmatchcase("evaluate/W/detections.json", _pattern("train/{experiment}/final.pth"))
