"""Command-line front door: parse, check the paths, call one handler, map errors to exit codes.

    chimera train --cell fixed/dense --profile ci --data-dir path/to/ag_news --out runs/
    chimera matrix --profile ci --out runs/ci
    chimera env
    chimera reproduce runs/ci/fixed-dense-ci-s0/record.json --out runs/reproduced
    chimera bands check runs/ci && chimera bench compare NEW.json bench/baselines/cpu.json
    chimera history add runs/ci bench/results/ci/bench.json && chimera history

Every command, argument and handler is declared once, in chimera/commands.py; this module turns that
table into the parser, checks each declared path before any work, and imports only the handler of the
command that runs. Exit codes: 0 success; 1 a run failed, a check found a problem or a reproduction
differs; 2 bad input (one-line message, no traceback); 130 interrupted (a resumable checkpoint was written).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

from chimera import __version__
from chimera.commands import COMMANDS, RENAMED, Argument, Command, leaves
from chimera.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, ChimeraError
from chimera.fileio import check_path


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the command table; each leaf sets `command` to its full name ("bands check")."""
    parser = argparse.ArgumentParser(
        prog="chimera", description="Chimera Bench: train and benchmark small transformer classifiers on "
        "AG News ({baseline, fixed} x {dense, moe}) and check that they generalise.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        _add_command(sub, command, command.name, help=command.help)
    table = leaves()
    for old, new in RENAMED.items():  # not listed by --help: the docs teach the new name
        command = table[new]
        description = f"The old name of `chimera {new}`; it goes in the next release. {command.description}"
        _add_command(sub, command, new, name=old, description=description.strip()).set_defaults(renamed_from=old)
    return parser


def _add_command(sub, command: Command, full: str, *, name: str = "", description: str = "",
                 **listed) -> argparse.ArgumentParser:
    parser = sub.add_parser(name or command.name, description=description or command.description or None, **listed)
    parser.set_defaults(command=full)
    _add_arguments(parser, command.arguments)
    if not command.subcommands:
        return parser
    # A default subcommand's options are accepted before it too (`chimera history --store S`); on the subcommands
    # their default is SUPPRESS, so a value given before the subcommand is kept.
    default = {s.name: s for s in command.subcommands}.get(command.default)
    shared = {a.name for a in default.arguments if not a.positional} if default else set()
    if default:
        _add_arguments(parser, [a for a in default.arguments if not a.positional])
        parser.set_defaults(command=f"{full} {default.name}")
    group = parser.add_subparsers(dest=f"{command.name.replace('-', '_')}_command", required=default is None,
                                  metavar=f"{command.name.upper()}_COMMAND")
    for subcommand in command.subcommands:
        leaf = group.add_parser(subcommand.name, help=subcommand.help, description=subcommand.description or None)
        leaf.set_defaults(command=f"{full} {subcommand.name}")
        _add_arguments(leaf, subcommand.arguments, suppress=shared)
    return parser


def _add_arguments(parser: argparse.ArgumentParser, arguments: Iterable[Argument], *,
                   suppress: Collection[str] = ()) -> None:
    for argument in arguments:
        kwargs = argument.kwargs()
        if argument.name in suppress:
            kwargs["default"] = argparse.SUPPRESS
        parser.add_argument(*argument.flags, **kwargs)


def check_paths(command: Command, args: argparse.Namespace) -> None:
    """Raise ChimeraError for the first path argument of `command` that cannot be used as the table declares."""
    for argument in command.arguments:
        value = getattr(args, argument.name, None)
        if argument.path is None or value is None:
            continue
        for path in value if isinstance(value, list) else [value]:
            check_path(Path(path).expanduser(), flag=argument.shown, kind=argument.path, role=argument.role)


def handler(command: Command) -> Callable[[argparse.Namespace], int]:
    """The command's handler, imported now: only the module of the command that runs is loaded."""
    module, _, function = command.handler.partition(":")
    return getattr(importlib.import_module(module), function)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # its per-file checkpoint chatter
    args = build_parser().parse_args(argv)
    command = leaves()[args.command]
    if getattr(args, "renamed_from", None):
        print(f"chimera: `{args.renamed_from}` is now `{args.command}`; the old name goes in the next release",
              file=sys.stderr)
    try:
        check_paths(command, args)  # before any work: a refused command leaves nothing behind
        return handler(command)(args)
    except ChimeraError as exc:
        print(f"chimera: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # a second Ctrl-C: stop now; the record says failed, checkpoints stay
        print("chimera: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
