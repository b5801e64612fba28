"""The ``fdiv`` command. Each subcommand is a ``(add_arguments, run)`` pair registered below.

Errors a person can fix (bad file, unknown divergence, bad option) print one line on stderr and
exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from fdiv import __version__, io
from fdiv.bench import command as bench_command
from fdiv.divergences import registry
from fdiv.estimation.estimate import BOUNDS, METHODS, estimate
from fdiv.estimation.knn import knn_estimate
from fdiv.estimation.ksg import ksg_mi
from fdiv.estimation.mutual_information import CRITICS, mutual_information
from fdiv.gan import commands as gan_commands
from fdiv.gan import distributed

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


def _estimate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("p", metavar="P", help="samples of P: .npy, .npz (one array), .csv, .pt")
    parser.add_argument("q", metavar="Q", help="samples of Q, same formats and dimension as P")
    parser.add_argument("--divergence", default="kl", help="registered divergence (default kl)")
    parser.add_argument("--bound", default="auto", choices=BOUNDS, help="variational bound")
    parser.add_argument(
        "--method",
        default="auto",
        choices=METHODS,
        help="estimator; auto picks one and says why (default auto)",
    )
    parser.add_argument("--folds", type=int, default=3, help="cross-fitted critics")
    parser.add_argument("--steps", type=int, default=6000, help="most training steps per fold")
    parser.add_argument("--batch-size", type=int, default=1024, help="samples per side per step")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--patience", type=int, default=400, help="most steps without improvement")
    parser.add_argument("--seed", type=int, default=0, help="seed of splits, init and batches")
    parser.add_argument("--device", default="auto", help="torch device; auto uses CUDA if present")
    parser.add_argument("--k", type=int, default=5, help="neighbours for --method knn")
    parser.add_argument("--adaptive", action="store_true", help="bias-reduced adaptive kNN")
    parser.add_argument("--json", metavar="OUT", help="write the whole result to this JSON file")


def _estimate_run(args: argparse.Namespace) -> int:
    if args.json:
        io.check_output(args.json)  # before the work, not after it
    p, q = io.load_samples(args.p), io.load_samples(args.q)
    if args.method == "knn":
        if registry.get(args.divergence).family != "kl":
            raise ValueError(f"--method knn estimates kl only, not {args.divergence!r}")
        est = knn_estimate(p, q, k=args.k, adaptive=args.adaptive)
        est = dataclasses.replace(est, reason="method='knn' was requested")
    else:
        est = estimate(
            p,
            q,
            args.divergence,
            args.bound,
            method=args.method,
            folds=args.folds,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            patience=args.patience,
            k=args.k,
            seed=args.seed,
            device=args.device,
            progress=True,
        )
    print(est)
    n_p, n_q = est.n_test
    print(f"method: {est.method} ({est.reason})")
    if est.n_train == (0, 0):  # knn, counts: nothing was trained
        print(f"({n_p} + {n_q} samples, no training; {est.seconds:.1f} s)")
    else:
        print(f"(held-out {n_p} + {n_q} samples; {est.steps} steps, {est.seconds:.1f} s)")
    for warning in est.warnings:
        print(f"fdiv: warning: {warning}", file=sys.stderr)
    if args.json:
        io.write_json(args.json, est.to_dict())
    return 0


def _mi_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("x", metavar="X", help="samples of X: .npy, .npz (one array), .csv, .pt")
    parser.add_argument("y", metavar="Y", help="samples of Y, same formats; row i pairs with X's")
    parser.add_argument(
        "--bound",
        default="auto",
        help="auto, infonce, nwj, dv, smile, or an f-divergence (f-MI); or ksg (kNN baseline)",
    )
    parser.add_argument("--critic", default="separable", choices=CRITICS, help="critic form")
    parser.add_argument("--steps", type=int, default=3000, help="most training steps")
    parser.add_argument("--batch-size", type=int, default=512, help="pairs per step")
    parser.add_argument("--seed", type=int, default=0, help="seed of splits, init and batches")
    parser.add_argument("--device", default="auto", help="torch device; auto uses CUDA if present")
    parser.add_argument("--k", type=int, default=3, help="neighbours for --bound ksg")
    parser.add_argument("--json", metavar="OUT", help="write the whole result to this JSON file")


def _mi_run(args: argparse.Namespace) -> int:
    x, y = io.load_samples(args.x), io.load_samples(args.y)
    if len(x) != len(y):
        raise ValueError(f"X and Y must have the same number of rows, got {len(x)} and {len(y)}")
    if args.bound == "ksg":
        value = ksg_mi(x, y, k=args.k)
        print(f"mutual information (KSG, k={args.k}): {value:.4f} nats (no interval for KSG)")
        result = {"method": "ksg", "value": value, "k": args.k, "n": len(x)}
    else:
        est = mutual_information(
            x, y, args.bound, args.critic, seed=args.seed, steps=args.steps,
            batch_size=args.batch_size, device=args.device, progress=True,
        )  # fmt: skip
        print(est)
        if est.method == "counts":
            print(f"method: counts ({est.reason})")
            print(f"({est.n_test[0]} pairs, no training; {est.seconds:.1f} s)")
        else:
            print(f"(test split {est.n_test[0]} pairs; {est.steps} steps, {est.seconds:.1f} s)")
        for warning in est.warnings:
            print(f"fdiv: warning: {warning}", file=sys.stderr)
        result = est.to_dict()
    if args.json:
        io.write_json(args.json, result)
    return 0


Command = tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[..., int]]

COMMANDS: list[Command] = [
    (
        "divergences",
        "list the registered f-divergences",
        _divergences_arguments,
        _divergences_run,
    ),
    (
        "estimate",
        "estimate a divergence between two sample files, with a 95%% interval (nats)",
        _estimate_arguments,
        _estimate_run,
    ),
    (
        "mi",
        "estimate the mutual information of paired sample files, with a 95%% interval (nats)",
        _mi_arguments,
        _mi_run,
    ),
    (
        "train",
        "train a GAN on an f-divergence (or wgan-gp / hinge); resumable",
        gan_commands.train_arguments,
        gan_commands.train_run,
    ),
    (
        "sample",
        "draw samples from a trained GAN run into an .npy file",
        gan_commands.sample_arguments,
        gan_commands.sample_run,
    ),
    (
        "evaluate",
        "sample-quality metrics and plots of a trained GAN run",
        gan_commands.evaluate_arguments,
        gan_commands.evaluate_run,
    ),
    (
        "bench",
        "run the benchmark suites, render benchmarks/results/REPORT.md, compare with old results",
        bench_command.add_arguments,
        bench_command.run,
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
        command = sub.add_parser(name, help=help_text, description=help_text.replace("%%", "%"))
        add_arguments(command)
        command.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fdiv`` command; returns the exit status. A process that joined a torchrun
    process group ends here instead (:func:`fdiv.gan.distributed.end_process`)."""
    status = _command(argv)
    if distributed.joined():
        distributed.end_process(status)
    return status


def _command(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        return int(args.run(args))
    except (UsageError, ValueError, TypeError, OSError) as err:  # OSError: files, permissions
        print(f"fdiv: error: {err}" if not isinstance(err, UsageError) else err, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fdiv: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
