"""pipeline.core.options: parsers built from frozen option dataclasses."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from pipeline.core.options import add_arguments, from_args, option


@dataclass(frozen=True)
class Example:
    annotations: Path = option(help="input file")
    iters: int | None = option(None, help="iterations")
    lr: float = option(0.02, help="learning rate")
    kinds: tuple[str, ...] = option(("globals", "blocks"), help="cache kinds")
    mode: Literal["error", "skip"] = option("error", help="bad images")
    dry_run: bool = option(False, help="shrink")
    internal: int = 3  # not an option


def parse(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser, Example)
    return parser, from_args(Example, parser.parse_args(argv))


def test_defaults_come_from_the_dataclass():
    _, opts = parse(["--annotations", "a.json"])
    assert opts == Example(annotations=Path("a.json"))
    assert opts.kinds == ("globals", "blocks") and opts.iters is None and opts.lr == 0.02


def test_values_are_typed():
    _, opts = parse(
        ["--annotations", "a.json", "--iters", "7", "--lr", "0.5", "--kinds", "objects", "--mode", "skip", "--dry-run"]
    )
    assert opts.iters == 7 and opts.lr == 0.5 and opts.kinds == ("objects",) and opts.mode == "skip"
    assert opts.dry_run is True and isinstance(opts.annotations, Path)


def test_required_choices_and_help_show_defaults(capsys):
    parser, _ = parse(["--annotations", "a"])
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --annotations is required
    with pytest.raises(SystemExit):
        parser.parse_args(["--annotations", "a", "--mode", "maybe"])
    text = parser.format_help()
    assert "learning rate (default: 0.02)" in text
    assert "iterations (default: none)" in text
    assert "shrink (default: False)" in text and "(default: False) (default" not in text
    assert "--internal" not in text


def test_an_explicit_action_skips_type_inference():
    def key_value(text):
        key, _, value = text.partition("=")
        return key, value

    class StoreDict(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            setattr(namespace, self.dest, dict(v.split("=", 1) for v in values))

    @dataclass(frozen=True)
    class WithActions:
        prompt: tuple[tuple[str, str], ...] = option((), help="KIND=FILE", type=key_value, action="append")
        overrides: dict | None = option(None, help="key=value overrides", nargs="+", action=StoreDict)

    parser = argparse.ArgumentParser()
    add_arguments(parser, WithActions)
    assert from_args(WithActions, parser.parse_args([])) == WithActions()
    opts = from_args(WithActions, parser.parse_args(["--prompt", "a=x", "--prompt", "b=y", "--overrides", "k=1"]))
    assert opts.prompt == (("a", "x"), ("b", "y")) and opts.overrides == {"k": "1"}
    assert "key=value overrides (default: none)" in parser.format_help()


def test_a_list_option_repeats_and_keeps_values_that_look_like_options():
    """``--kinds=VALUE`` per value (the form the workflow's rules use for names from a dataset or a config): the
    values accumulate in order, replace the default, and one that starts with ``-`` stays a value."""
    _, opts = parse(["--annotations", "a", "--kinds=--annotations=../../x.json", "--kinds=-x", "--kinds=a b"])
    assert opts.kinds == ("--annotations=../../x.json", "-x", "a b") and opts.annotations == Path("a")
    _, opts = parse(["--annotations", "a", "--kinds", "objects", "globals", "--kinds=blocks"])
    assert opts.kinds == ("objects", "globals", "blocks")
    assert parse(["--annotations", "a"])[1].kinds == ("globals", "blocks")
