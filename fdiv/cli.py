"""The ``fdiv`` command. Each subcommand is a ``(add_arguments, run)`` pair registered below.

Errors a person can fix (bad file, unknown divergence, bad option) print one line on stderr and
exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from fdiv import __version__
from fdiv.divergences import registry

EXIT_USAGE = 2


class UsageError(Exception):
    """A problem with the command line or its inputs, shown to the user as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _divergences_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--alpha",
        type=float,
        action="append",
        default=[],
        metavar="A",
        help="also list the alpha-divergence with this parameter (repeatable)",
    )


def _divergences_run(args: argparse.Namespace) -> int:
    records = list(registry.registered()) + [registry.alpha(a) for a in args.alpha]
    rows = [("name", "aliases", "f(u)", "g(v)", "f*(g(v))", "range (nats)")]
    for r in records:
        low, high = r.value_range
        rows.append(
            (
                r.name,
                ", ".join(r.aliases) or "-",
                r.f_text,
                r.g_text,
                r.conjugate_activation_text,
                f"[{_number(low)}, {_number(high)}]",
            )
        )
    if not args.alpha:
        a = registry.alpha(2.0)
        rows.append(("alpha(a)", "-", a.f_text, a.g_text, a.conjugate_activation_text, "a != 0, 1"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def _number(x: float) -> str:
    known = {0.6931471805599453: "log 2", -1.3862943611198906: "-log 4"}
    if x in known:
        return known[x]
    return "inf" if x == float("inf") else f"{x:g}"


Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[..., int]]

COMMANDS: list[Command] = [
    (
        "divergences",
        "list the registered f-divergences",
        _divergences_arguments,
        _divergences_run,
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fdiv",
        description="f-divergences between sample sets (all values in nats).",
    )
    parser.add_argument("--version", action="version", version=f"fdiv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, help_text, add_arguments, run in COMMANDS:
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(command)
        command.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fdiv`` command; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        return int(args.run(args))
    except (UsageError, ValueError, TypeError, FileNotFoundError, IsADirectoryError) as err:
        print(f"fdiv: error: {err}" if not isinstance(err, UsageError) else err, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fdiv: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
