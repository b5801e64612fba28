"""The ``fdiv train``, ``fdiv sample`` and ``fdiv evaluate`` subcommands (registered in fdiv.cli).

Every :class:`TrainConfig` field is a ``train`` option (``lr_g`` -> ``--lr-g``), so the command
line and the library cannot drift apart.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fdiv.gan import metrics, plots, refine
from fdiv.gan.config import DATA_DEFAULTS, LOSS_DEFAULTS, TrainConfig, option_types
from fdiv.gan.data import Dataset, load_dataset
from fdiv.gan.models import generate
from fdiv.gan.refine import Refined
from fdiv.gan.trainer import NonFiniteLossError, load_generator, resume, train
from fdiv.io import atomic_write, check_output

__all__ = [
    "evaluate_arguments",
    "evaluate_run",
    "sample_arguments",
    "sample_run",
    "train_arguments",
    "train_run",
]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="RUN_DIR", help="directory of a new run")
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue this run from its latest checkpoint"
    )
    hints = option_types()
    for f in fields(TrainConfig):
        hint = hints[f.name]
        options: dict[str, Any] = {"default": argparse.SUPPRESS}
        if hint is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            count = len(typing.get_args(hint))
            options.update(type=item, nargs="+" if Ellipsis in typing.get_args(hint) else count)
        else:
            options["type"] = hint
        options["help"] = f"{f.metadata['help']} (default: {_default(f.name, f.default)})"
        parser.add_argument(_flag(f.name), **options)


def _given_flag(name: str, value: object) -> str:
    """The flag as typed: ``--no-evaluate`` for a boolean option given as false."""
    return "--no-" + name.replace("_", "-") if value is False else _flag(name)


def _default(name: str, default: object) -> str:
    """The default as help text; per loss and data (LOSS_DEFAULTS, DATA_DEFAULTS) where the
    field's default is None."""
    if default is not None:
        return _text(default)
    common = LOSS_DEFAULTS["*"][name]
    rows = [
        (f"{key}: ", row[name])
        for key, row in (
            LOSS_DEFAULTS | {f"--data {k}": v for k, v in DATA_DEFAULTS.items()}
        ).items()
        if row.get(name, common) != common
    ]
    return "; ".join(f"{label}{_text(value)}" for label, value in [("", common), *rows])


def _text(value: object) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def train_run(args: argparse.Namespace) -> int:
    given = {
        f.name: tuple(v) if isinstance(v, list) else v
        for f in fields(TrainConfig)
        if (v := getattr(args, f.name, None)) is not None
    }
    try:
        if args.resume:
            if args.out:
                raise ValueError("give either --out (a new run) or --resume (an existing one)")
            extra = sorted(set(given) - {"steps"})
            if extra:
                shown = ", ".join(_given_flag(name, given[name]) for name in extra)
                raise ValueError(
                    "with --resume only --steps may be given (the run keeps its configuration);"
                    f" got {shown}"
                )
            result = resume(args.resume, steps=given.get("steps"))
            run_dir = args.resume
        else:
            if not args.out:
                raise ValueError("give --out RUN_DIR for a new run (or --resume RUN_DIR)")
            result = train(TrainConfig(**given), args.out)
            run_dir = args.out
    except NonFiniteLossError as err:
        print(f"fdiv: error: {err}", file=sys.stderr)
        return 1
    if result:
        print(metrics.describe(result))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run directory: {run_dir}")
    return 0


def _run_options(parser: argparse.ArgumentParser, n_help: str) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a training run directory")
    parser.add_argument("-n", type=int, default=metrics.N_SAMPLES, help=n_help)
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent codes")
    parser.add_argument(
        "--raw", action="store_true", help="use the raw generator instead of its moving average"
    )


def _count(flag: str, n: int, least: int = 1) -> int:
    if n < least:
        raise ValueError(f"{flag} must be an integer >= {least}, got {n}")
    return n


def _check_memory(n: int, floats_per_sample: int) -> None:
    """A ValueError when ``n`` samples of ``floats_per_sample`` float32 values exceed the RAM."""
    needed = n * floats_per_sample * 4
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: let torch try
        return
    if needed > total:
        raise ValueError(
            f"-n {n}: the samples need about {needed / 2**30:,.1f} GiB, more than this "
            f"machine's {total / 2**30:,.1f} GiB of memory"
        )


def _refine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--refine",
        action="store_true",
        help="refine the samples with a Metropolis-Hastings chain on the generator's draws, "
        "steered by a data/generator density ratio fitted here (fdiv.gan.refine; on ring8 it "
        "widened the modes toward the data's but lowered the high-quality share)",
    )
    parser.add_argument(
        "--refine-steps", type=int, default=refine.STEPS, help="proposals per refined sample"
    )


def _refined(
    args: argparse.Namespace, generator: torch.nn.Module, dataset: Dataset, n: int
) -> Refined:
    """The refined samples for ``args``, their acceptance printed."""
    steps = _count("--refine-steps", args.refine_steps)
    out = refine.refine(generator, dataset, n, args.seed, steps=steps, progress=sys.stderr.isatty())
    print(
        f"refined: {steps} proposals per sample, {100 * out.acceptance:.1f}% accepted, "
        f"{100 * out.unmoved:.1f}% of samples left as drawn (ratio critic's validation "
        f"objective {out.critic_validation:.4f} nats; -log 4 = {-math.log(4):.4f}: nothing learnt)"
    )
    return out


def sample_arguments(parser: argparse.ArgumentParser) -> None:
    _run_options(parser, "number of samples")
    parser.add_argument("-o", "--output", required=True, help="output .npy file (N, d) float32")
    _refine_options(parser)


def sample_run(args: argparse.Namespace) -> int:
    output = check_output(args.output)
    if output.suffix != ".npy":
        raise ValueError(f"{output}: the output must be an .npy file")
    n = _count("-n", args.n)
    generator, config = load_generator(args.run_dir, use_ema=not args.raw)
    _check_memory(n, generator.latent_dim + 2 * _output_dim(generator))
    if args.refine:
        drawn = _refined(args, generator, load_dataset(config.data), n).samples
    else:
        drawn = generate(generator, n, args.seed)
    samples = drawn.cpu().numpy().astype(np.float32)
    atomic_write(output, lambda out: np.save(out, samples, allow_pickle=False))
    noun = "sample" if n == 1 else "samples"
    kind = "refined " if args.refine else ""
    print(f"wrote {n} {kind}{noun} of dimension {samples.shape[1]} to {output}")
    return 0


def _output_dim(generator: torch.nn.Module) -> int:
    """The dimension of one generated sample."""
    with torch.no_grad():
        return int(generate(generator, 1, 0).shape[1])


def evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    _run_options(parser, "generated samples to evaluate")
    parser.add_argument(
        "--estimate-steps", type=int, default=300, help="critic steps of the held-out estimate"
    )
    _refine_options(parser)


def evaluate_run(args: argparse.Namespace) -> int:
    n = _count("-n", args.n, metrics.MIN_SAMPLES)
    estimate_steps = _count("--estimate-steps", args.estimate_steps)
    generator, config = load_generator(args.run_dir, use_ema=not args.raw)
    _check_memory(n, generator.latent_dim + 2 * _output_dim(generator))
    dataset = load_dataset(config.data)
    result = metrics.evaluate(
        generator, dataset, n=n, seed=args.seed, estimate_steps=estimate_steps
    )
    print(metrics.describe(result))
    for path in plots.plot_run(Path(args.run_dir), generator, dataset, seed=args.seed):
        print(f"plot: {path}")
    if args.refine:  # beside the raw generator's figures, never instead of them
        refined = _refined(args, generator, dataset, n).samples
        result = metrics.evaluate(
            generator, dataset, seed=args.seed, estimate_steps=estimate_steps, samples=refined
        )
        print(metrics.describe(result))
        path = Path(args.run_dir) / "samples-refined.png"
        print(f"plot: {plots.plot_samples(path, refined, dataset, args.seed, 'refined')}")
    return 0
