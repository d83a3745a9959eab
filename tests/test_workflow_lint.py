"""Every value a rule puts into a shell command is shell-quoted: each replacement field of every ``shell:`` string in
workflow/rules/ (all branches, read as text) carries ``:q``. Lists are argv words, each quoted by ``:q``."""

from __future__ import annotations

import ast
import io
import string
import tokenize
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[1] / "workflow" / "rules"
_SKIP = (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.COMMENT)


def shell_commands(text: str) -> list[tuple[int, str]]:
    """``(line, command)`` of every ``shell:`` directive in Snakemake source ``text``: its string literals joined
    (Snakemake concatenates the strings of a directive across lines)."""
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    commands = []
    for i, tok in enumerate(tokens[:-1]):
        if not (tok.type == tokenize.NAME and tok.string == "shell" and tokens[i + 1].string == ":"):
            continue
        j, parts = i + 2, []
        while tokens[j].type in _SKIP + (tokenize.STRING,):
            if tokens[j].type == tokenize.STRING:
                parts.append(ast.literal_eval(tokens[j].string))
            j += 1
        commands.append((tok.start[0], "".join(parts)))
    return commands


def unquoted_fields(command: str) -> list[str]:
    """The replacement fields of a shell command that Snakemake would not quote (no ``:q`` format spec)."""
    return [
        "{" + field + (f":{spec}" if spec else "") + "}"
        for _, field, spec, _ in string.Formatter().parse(command)
        if field is not None and not spec.endswith("q")
    ]


def test_shell_commands_are_found_in_every_rule_file():
    """The reader finds one command per ``shell:`` directive (a directive it missed would go unchecked)."""
    for path in sorted(RULES.rglob("*.smk")):
        text = path.read_text()
        directives = sum(1 for line in text.splitlines() if line.strip() == "shell:")
        commands = shell_commands(text)
        assert len(commands) == directives, path
        assert all(cmd.startswith(("python -m ", "echo ")) for _, cmd in commands), path
    assert sum(len(shell_commands(p.read_text())) for p in RULES.rglob("*.smk")) >= 30


@pytest.mark.parametrize("path", sorted(RULES.rglob("*.smk")), ids=lambda p: str(p.relative_to(RULES)))
def test_every_shell_field_is_quoted(path):
    bad = [
        f"{path.relative_to(RULES)}:{line}: {field}"
        for line, command in shell_commands(path.read_text())
        for field in unquoted_fields(command)
    ]
    assert not bad, "unquoted shell fields (write {x:q}; several argv words: a list):\n" + "\n".join(bad)


def test_the_lint_flags_unquoted_fields():
    source = (
        'rule r:\n    params:\n        m="x",\n    shell:\n'
        '        "python -m a --model {params.m} --out {output:q}"\n'
        '        " {wildcards.kind} {log} {input.x:q} {{literal}}"\n'
    )
    [(line, command)] = shell_commands(source)
    assert line == 4
    assert unquoted_fields(command) == ["{params.m}", "{wildcards.kind}", "{log}"]
