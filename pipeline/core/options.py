"""Stage options: one frozen dataclass per command, its command-line parser built from the dataclass.

A field declared with :func:`option` is also a command-line option ``--field-name``: its type gives argparse's
``type`` / ``nargs`` / ``choices`` (``int``, ``float``, ``str``, ``Path``, ``bool`` flags, ``X | None``,
``tuple[X, ...]`` and ``list[X]`` lists, repeatable (:class:`RepeatableList`), ``Literal[...]`` choices; nothing
is inferred for a field given an ``action=``: its ``type`` / ``nargs`` come from :func:`option` only), its default
is the option's default (shown in ``--help``), and a field without a default is a required option. So a stage's
CLI defaults cannot drift from the defaults its ``run(options)`` uses::

    @dataclass(frozen=True)
    class FitOptions:
        annotations: Path = option(help="remapped base training file (input)")
        iters: int | None = option(None, help="iterations (None: the config's schedule)")

    parser = argparse.ArgumentParser()
    add_arguments(parser, FitOptions)
    opts = from_args(FitOptions, parser.parse_args(argv))
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

_SCALARS = (int, float, str, Path)


def option(default: Any = dataclasses.MISSING, *, help: str, flag: str | None = None, **argparse_kwargs: Any):
    """A dataclass field that is a command-line option (``flag`` defaults to ``--<name with dashes>``; a ``flag``
    without a leading ``-`` makes a positional argument shown as ``flag``; extra keyword arguments go to
    ``add_argument``, e.g. ``metavar`` or ``type`` for a custom parser)."""
    metadata = {"help": help, "flag": flag, "argparse": argparse_kwargs}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    if isinstance(default, list | dict | set):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def key_value(text: str) -> tuple[str, str]:
    """argparse ``type`` of a ``KEY=VALUE`` option (``--prompt vild=results/prompts/vild.pth``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def dict_action(**kwargs) -> argparse.Action:
    """mmengine's ``DictAction`` (dotted-key ``--cfg-options``), imported as the parser is built (mmengine is slow to
    import)."""
    from mmengine.config import DictAction

    return DictAction(**kwargs)


class RepeatableList(argparse.Action):
    """A list option that may be given more than once, its values joined in order (``--names a b --names=c`` ->
    ``[a, b, c]``; a default is replaced, not extended). ``--names=VALUE`` keeps a VALUE that starts with ``-`` a
    value: the form workflow rules use for names a user or a dataset supplies."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest, None)
        items = [] if current is None or current is self.default else list(current)
        setattr(namespace, self.dest, items + list(values))


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if (typing.get_origin(tp) in (typing.Union, types.UnionType)) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return tp, False


def _argparse_kwargs(name: str, tp: Any) -> dict[str, Any]:
    tp, _ = _unwrap_optional(tp)
    origin = typing.get_origin(tp)
    if tp is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin is Literal:
        choices = typing.get_args(tp)
        return {"choices": choices, "type": type(choices[0])}
    if origin in (tuple, list):
        item = typing.get_args(tp)[0] if typing.get_args(tp) else str
        item, _ = _unwrap_optional(item)
        kwargs = _argparse_kwargs(name, item)
        kwargs.update(nargs="*", action=RepeatableList)
        return kwargs
    if tp in _SCALARS:
        return {"type": tp}
    raise TypeError(f"option {name}: no command-line form for type {tp!r} (pass type= to option())")


def options_fields(cls) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are command-line options."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def field_default(f: dataclasses.Field) -> Any:
    """A field's default value (``dataclasses.MISSING`` for a required one)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def add_arguments(parser: argparse.ArgumentParser | Any, cls) -> None:
    """Add one option per :func:`option` field of the dataclass ``cls`` to ``parser`` (or an argument group)."""
    hints = typing.get_type_hints(cls)
    for f in options_fields(cls):
        explicit = f.metadata["argparse"]
        # an explicit action (append, DictAction, ...) brings its own type / nargs: nothing inferred from the type
        kwargs = {} if "action" in explicit else _argparse_kwargs(f.name, hints[f.name])
        kwargs.update(explicit)
        default = field_default(f)
        help_text = f.metadata["help"]
        if default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = list(default) if isinstance(default, tuple) else default
            help_text += " (default: {})".format("none" if default is None else "%(default)s")
        flag = f.metadata["flag"] or "--" + f.name.replace("_", "-")
        if flag.startswith("-"):
            action = parser.add_argument(flag, dest=f.name, help=help_text, **kwargs)
        else:  # a positional argument, ``flag`` its metavar
            kwargs.pop("required", None)
            action = parser.add_argument(f.name, metavar=flag, help=help_text, **kwargs)
        action.help = help_text  # BooleanOptionalAction appends its own default text on some Python versions only


def from_args(cls, args: argparse.Namespace, **overrides: Any):
    """An instance of ``cls`` from parsed arguments (lists become tuples where the field is a tuple)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in options_fields(cls):
        if not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        tp, _ = _unwrap_optional(hints[f.name])
        if typing.get_origin(tp) is tuple and isinstance(value, list):
            value = tuple(value)
        values[f.name] = value
    values.update(overrides)
    return cls(**values)


#: subcommand name -> (options class, its runner, one-line help)
Commands = dict[str, tuple[type, Callable[[Any], Any], str]]


def run_command(commands: Commands, opts: Any) -> Any:
    """Run the subcommand of ``commands`` whose options class ``opts`` is an instance of."""
    for cls, runner, _ in commands.values():
        if type(opts) is cls:
            return runner(opts)
    raise TypeError(f"no subcommand takes {type(opts).__name__} options")


def command_parser(prog: str, description: str | None, commands: Commands) -> argparse.ArgumentParser:
    """A parser with one subcommand per entry of ``commands``, each built from its options class; ``--log`` and
    ``-v`` on the top level. A parsed subcommand's ``func(args)`` runs it; an options class with a plain ``argv``
    field receives the raw arguments (``args.argv``, set by :func:`pipeline.core.cli.dispatch`; for relaunches)."""
    from pipeline.core import cli

    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_log_argument(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (cls, runner, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=cls.__doc__)
        add_arguments(p, cls)
        wants_argv = any(f.name == "argv" for f in dataclasses.fields(cls))

        def func(args, cls=cls, runner=runner, wants_argv=wants_argv):
            extra = {"argv": tuple(getattr(args, "argv", ()))} if wants_argv else {}
            return runner(from_args(cls, args, **extra))

        p.set_defaults(func=func)
    return parser


@dataclasses.dataclass(frozen=True)
class Stage:
    """A stage with subcommands, its contract from one table: ``run(options)``, ``build_parser()``,
    ``main(argv=None)`` (parse, set up logging, run the subcommand)."""

    prog: str
    description: str | None
    commands: Commands = dataclasses.field(default_factory=dict)

    def command(self, name: str, options: type, help: str) -> Callable:
        """Decorator: register the decorated runner as subcommand ``name`` taking ``options``."""

        def register(runner: Callable[[Any], Any]) -> Callable[[Any], Any]:
            self.commands[name] = (options, runner, help)
            return runner

        return register

    def run(self, opts: Any) -> Any:
        return run_command(self.commands, opts)

    def build_parser(self) -> argparse.ArgumentParser:
        return command_parser(self.prog, self.description, self.commands)

    def main(self, argv=None) -> Any:
        from pipeline.core import cli

        return cli.dispatch(self.build_parser(), argv)


@dataclasses.dataclass(frozen=True)
class Command:
    """A stage without subcommands: ``build_parser()`` and ``main(argv=None)`` from its options class and runner.
    Logging is set up before the options are built, so their checks' errors reach the ``--log`` file too."""

    prog: str
    description: str | None
    options: type
    runner: Callable[[Any], Any]

    def build_parser(self) -> argparse.ArgumentParser:
        from pipeline.core import cli

        parser = argparse.ArgumentParser(
            prog=self.prog, description=self.description, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        cli.add_log_argument(parser)
        add_arguments(parser, self.options)
        return parser

    def main(self, argv=None) -> Any:
        from pipeline.core import cli

        args = self.build_parser().parse_args(argv)
        cli.setup_logging(args.log, args.verbose)
        return self.runner(from_args(self.options, args))
