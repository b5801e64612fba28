"""The GAN training loop: k critic steps, then one generator step, checkpointed and resumable.

A run lives in a directory: ``config.json`` (the :class:`TrainConfig`), ``metrics.jsonl`` (one
line per logged step), ``eval.jsonl`` / ``evaluation.json`` (sample-quality metrics),
``ckpt-<step>.pt`` (the newest ``keep_checkpoints``), PNG plots, and TensorBoard events when
TensorBoard is installed.

Reproducibility: all randomness of the loop comes from two explicit CPU ``torch.Generator``s per
rank (one for data, one for latent codes and penalty interpolation), whose states are
checkpointed with the networks, the EMA and both Adam states; the networks use no dropout and
the global RNG is only used, inside ``fork_rng``, to initialise the weights. So on the CPU a run
interrupted and resumed ends with bitwise the same weights as one that ran straight through.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
import types
import typing
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fdiv.gan import checkpoint, metrics, plots
from fdiv.gan.data import Dataset, load_dataset, standardisation
from fdiv.gan.distributed import Context, from_environment, single
from fdiv.gan.models import build_models
from fdiv.gan.objectives import objective
from fdiv.io import write_json
from fdiv.losses import gradient_penalty

__all__ = [
    "LOSS_DEFAULTS",
    "NonFiniteLossError",
    "TrainConfig",
    "Trainer",
    "load_generator",
    "loss_defaults",
    "option_types",
    "resume",
    "train",
]

PENALTIES: tuple[str, ...] = ("auto", "none", "wgan-gp", "r1")

#: The defaults that depend on the loss. A :class:`TrainConfig` field left at None takes the value
#: of its loss's row (by canonical name), else of the ``"*"`` row. Tuned on ring8 and grid25 for
#: about 1-2 CPU minutes a run (benchmarks/results/gan-*-cpu.md): the f-divergences learn fastest
#: with a high learning rate, then a linear decay over the last 30% sharpens the modes (grid25:
#: 12% high-quality samples before the decay, 84% after); the networks work in standardised
#: coordinates (see fdiv.gan.models), so one row serves every data scale. wgan-gp keeps the
#: usual n_critic 5, lr 1e-4, betas (0.5, 0.9) and fewer steps, as each costs ~5 critic updates.
LOSS_DEFAULTS: dict[str, dict[str, Any]] = {
    "*": {
        "steps": 7000,
        "n_critic": 1,
        "lr_g": 2e-3,
        "lr_d": 2e-3,
        "betas_g": (0.5, 0.999),
        "betas_d": (0.5, 0.999),
        "lr_decay": 0.3,
    },
    "wgan-gp": {
        "steps": 2000,
        "n_critic": 5,
        "lr_g": 1e-4,
        "lr_d": 1e-4,
        "betas_g": (0.5, 0.9),
        "betas_d": (0.5, 0.9),
        "lr_decay": 0.0,
    },
}


def _option(default: Any, help_text: str) -> Any:
    return field(default=default, metadata={"help": help_text})


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as ``config.json`` in the run directory."""

    data: str = _option("ring8", "dataset: ring8, grid25, spiral, digits, or a path to an .npy")
    divergence: str = _option(
        "js", "any registered f-divergence (e.g. js, gan, kl, alpha(2)), wgan-gp or hinge"
    )
    generator_objective: str = _option("nonsaturating", "nonsaturating or minimax")
    steps: int | None = _option(None, "generator steps")
    batch_size: int = _option(256, "samples per batch (per process)")
    n_critic: int | None = _option(None, "critic steps per generator step")
    lr_g: float | None = _option(None, "generator Adam learning rate")
    lr_d: float | None = _option(None, "critic Adam learning rate")
    betas_g: tuple[float, float] | None = _option(None, "generator Adam betas")
    betas_d: tuple[float, float] | None = _option(None, "critic Adam betas")
    lr_decay: float | None = _option(
        None,
        "decay both learning rates linearly to 0 over this last fraction of --steps (0: constant; "
        "resuming with more steps follows the new length)",
    )
    penalty: str = _option(
        "auto",
        "critic gradient penalty: auto (wgan-gp for the wgan-gp loss, r1 otherwise), none, "
        "wgan-gp, r1",
    )
    gp_weight: float = _option(10.0, "weight of the wgan-gp penalty, E[(||grad v|| - 1)^2]")
    r1_weight: float = _option(1.0, "weight of the r1 penalty, 1/2 E_P[||grad v||^2]")
    ema: float = _option(0.999, "decay of the generator's exponential moving average")
    latent_dim: int = _option(8, "latent code dimension")
    generator_hidden: tuple[int, ...] = _option((128, 128, 128), "generator MLP hidden sizes")
    critic_hidden: tuple[int, ...] = _option((128, 128, 128), "critic MLP hidden sizes")
    channels: int = _option(64, "channels of the convolutional pair (image data)")
    seed: int = _option(0, "random seed")
    device: str = _option("auto", "torch device; auto = CUDA when available")
    amp: bool = _option(False, "bf16 autocast (CUDA only)")
    loss_backend: str = _option("auto", "auto, torch, triton, or eager (plain autograd)")
    log_every: int = _option(10, "write metrics every this many steps")
    eval_every: int = _option(0, "evaluate every this many steps (0: only at the end)")
    eval_samples: int = _option(2500, "generated samples per evaluation")
    eval_steps: int = _option(300, "critic steps of the held-out divergence estimate")
    evaluate: bool = _option(True, "evaluate and plot (at --eval-every and at the end)")
    checkpoint_every: int = _option(1000, "write a checkpoint every this many steps")
    keep_checkpoints: int = _option(3, "checkpoints kept")

    def __post_init__(self) -> None:
        """Fill the fields left at None from the loss's row of :data:`LOSS_DEFAULTS`."""
        for name, value in loss_defaults(self.divergence).items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    def validate(self) -> None:
        """Raise ValueError (TypeError for wrong types) naming the first bad option."""
        hints = option_types()
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), hints[f.name])
        for name in ("steps", "batch_size", "n_critic", "latent_dim", "channels", "log_every"):
            _require(name, getattr(self, name) >= 1, "a positive integer")
        for name in ("eval_samples", "eval_steps", "checkpoint_every", "keep_checkpoints"):
            _require(name, getattr(self, name) >= 1, "a positive integer")
        _require("eval_every", self.eval_every >= 0, "a non-negative integer")
        _require("seed", self.seed >= 0, "a non-negative integer")
        for name in ("lr_g", "lr_d"):
            value = getattr(self, name)
            _require(name, math.isfinite(value) and value > 0, "a positive finite number")
        for name in ("betas_g", "betas_d"):
            _require(name, all(0 <= b < 1 for b in getattr(self, name)), "two numbers in [0, 1)")
        _require("ema", 0 <= self.ema < 1, "a number in [0, 1)")
        _require("lr_decay", 0 <= self.lr_decay <= 1, "a fraction in [0, 1]")
        for name in ("gp_weight", "r1_weight"):
            weight = getattr(self, name)
            _require(name, math.isfinite(weight) and weight >= 0, "a non-negative finite number")
        for name in ("generator_hidden", "critic_hidden"):
            _require(name, len(getattr(self, name)) >= 1 and min(getattr(self, name)) >= 1, "sizes")
        if self.penalty not in PENALTIES:
            raise ValueError(f"penalty {self.penalty!r} is unknown; known: {', '.join(PENALTIES)}")
        objective(self.divergence, self.generator_objective, self.loss_backend)

    @property
    def resolved_penalty(self) -> str:
        """The penalty in force: ``auto`` is wgan-gp for the wgan-gp loss, r1 otherwise."""
        if self.penalty == "auto":
            return "wgan-gp" if self.divergence == "wgan-gp" else "r1"
        return self.penalty

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config stored by :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def loss_defaults(divergence: str) -> dict[str, Any]:
    """The loss-dependent defaults of ``divergence`` (any name or alias the trainer accepts)."""
    try:
        name = objective(divergence).name
    except ValueError:  # reported by validate()
        name = divergence
    return {**LOSS_DEFAULTS["*"], **LOSS_DEFAULTS.get(name, {})}


def option_types() -> dict[str, Any]:
    """Each :class:`TrainConfig` field's type, without the ``| None`` of loss-dependent ones."""
    result = {}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        if isinstance(hint, types.UnionType):
            (hint,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
        result[name] = hint
    return result


def _check_type(name: str, value: object, hint: Any) -> None:
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, tuple) or not all(_is(v, item) for v in value):
            raise TypeError(f"{name} must be a tuple of {item.__name__}, got {value!r}")
        if typing.get_args(hint)[1:] != (Ellipsis,) and len(value) != len(typing.get_args(hint)):
            raise ValueError(
                f"{name} must hold {len(typing.get_args(hint))} numbers, got {value!r}"
            )
    elif not _is(value, hint):
        raise TypeError(f"{name} must be {hint.__name__}, got {type(value).__name__} {value!r}")


def _is(value: object, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _require(name: str, ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {what}")


class NonFiniteLossError(RuntimeError):
    """Training stopped on a NaN or infinite loss; the message names the step and checkpoint."""


def _seed(seed: int, rank: int, stream: int) -> int:
    """A well-mixed 63-bit seed for one random stream of one rank."""
    return int(np.random.SeedSequence([seed, rank, stream]).generate_state(1, np.uint64)[0] >> 1)


def _lr_factor(step: int, steps: int, decay: float) -> float:
    """The learning-rate multiplier at ``step``: 1, then linear to 0 over the last ``decay``."""
    remaining = 1.0 - step / steps
    return min(1.0, remaining / decay) if decay > 0 else 1.0


def _grad_norm(module: nn.Module) -> Tensor:
    norms = [p.grad.detach().norm() for p in module.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms))


_LOG_KEYS = (
    "critic_loss",
    "bound_p",
    "bound_q",
    "penalty",
    "grad_norm_d",
    "generator_loss",
    "grad_norm_g",
)


class Trainer:
    """One run: models, optimisers, random streams and the step counter, on one rank."""

    def __init__(
        self, config: TrainConfig, run_dir: str | Path, context: Context | None = None
    ) -> None:
        config.validate()
        self.config = config
        self.run_dir = Path(run_dir)
        self.ctx = context or from_environment(config.device) or single(_device(config.device))
        device = self.ctx.device
        if config.amp and device.type != "cuda":
            raise ValueError("amp (bf16 autocast) needs a CUDA device")
        self.dataset: Dataset = load_dataset(config.data)
        self.objective = objective(
            config.divergence, config.generator_objective, config.loss_backend
        )
        self.penalty = config.resolved_penalty
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            generator, critic = _models(config, self.dataset)
        self.generator, self.critic = generator.to(device), critic.to(device)
        self.ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.scale = standardisation(self.dataset)[1]
        self.generator_ddp, self.critic_ddp = self.ctx.wrap(generator), self.ctx.wrap(critic)
        self.opt_g = torch.optim.Adam(generator.parameters(), config.lr_g, config.betas_g)
        self.opt_d = torch.optim.Adam(critic.parameters(), config.lr_d, config.betas_d)
        rank = self.ctx.rank
        self.data_rng = torch.Generator().manual_seed(_seed(config.seed, rank, 0))
        self.noise_rng = torch.Generator().manual_seed(_seed(config.seed, rank, 1))
        self.step = 0
        self.last_checkpoint: Path | None = None

    # -- one step ------------------------------------------------------------------------------

    def _autocast(self) -> Any:
        if self.config.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _codes(self, n: int) -> Tensor:
        z = torch.randn(n, self.config.latent_dim, generator=self.noise_rng)
        return z.to(self.ctx.device)

    def _batch(self) -> tuple[Tensor, Tensor]:
        """(real samples, latent codes) for one update, from the data and noise streams."""
        n = self.config.batch_size
        return self.dataset.sample(n, self.data_rng).to(self.ctx.device), self._codes(n)

    def _penalty(self, x_real: Tensor, x_fake: Tensor) -> Tensor:
        """The gradient penalty, through the unwrapped critic (see ``distributed``).

        The gradient is taken in the networks' standardised coordinates (the data-space gradient
        times the data scale), so the penalty weights do not depend on the data's scale.
        """
        if self.penalty == "wgan-gp":
            eps = torch.rand(len(x_real), 1, generator=self.noise_rng).to(x_real.device)
            x = eps * x_real + (1.0 - eps) * x_fake
        else:
            x = x_real
        x = x.detach().requires_grad_(True)
        with self._autocast():
            v = self.critic(x).float()
        (grads,) = torch.autograd.grad(v.sum(), x, create_graph=True)
        grads = grads * self.scale
        backend = "auto" if self.config.loss_backend == "eager" else self.config.loss_backend
        weight = self.config.gp_weight if self.penalty == "wgan-gp" else self.config.r1_weight
        return gradient_penalty(grads, self.penalty, weight, backend)

    def critic_update(self, detailed: bool = False) -> dict[str, Tensor]:
        """One Adam step of the critic on a fresh batch; its loss (and more when ``detailed``)."""
        x_real, z = self._batch()
        with torch.no_grad(), self._autocast():
            x_fake = self.generator(z).float()
        with self._autocast():
            v = self.critic_ddp(torch.cat([x_real, x_fake])).float()
        v_p, v_q = v[: len(x_real)], v[len(x_real) :]
        loss = self.objective.critic(v_p, v_q)
        out = {"critic_loss": loss.detach()}
        total = loss
        if self.penalty != "none":
            penalty = self._penalty(x_real, x_fake)
            out["penalty"] = penalty.detach()
            total = loss + penalty
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        if detailed:
            out["bound_p"], out["bound_q"] = self.objective.bound_terms(v_p, v_q)
            out["grad_norm_d"] = _grad_norm(self.critic)
        self.opt_d.step()
        return out

    def generator_update(self, detailed: bool = False) -> dict[str, Tensor]:
        """One Adam step of the generator (the critic frozen), then the EMA update."""
        z = self._codes(self.config.batch_size)
        self.critic.requires_grad_(False)
        try:
            with self._autocast():
                v_q = self.critic(self.generator_ddp(z)).float()
            loss = self.objective.generator(v_q)
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
        finally:
            self.critic.requires_grad_(True)
        out = {"generator_loss": loss.detach()}
        if detailed:
            out["grad_norm_g"] = _grad_norm(self.generator)
        self.opt_g.step()
        self._update_ema()
        return out

    @torch.no_grad()
    def _update_ema(self) -> None:
        """EMA with warm-up: decay min(ema, (1 + t) / (10 + t)) at generator step t."""
        decay = min(self.config.ema, (1.0 + self.step) / (10.0 + self.step))
        for e, p in zip(self.ema.parameters(), self.generator.parameters(), strict=True):
            e.lerp_(p, 1.0 - decay)

    def train_step(self, detailed: bool = False) -> dict[str, float]:
        """``n_critic`` critic updates and one generator update; rank-averaged metrics.

        Raises :class:`NonFiniteLossError` (on every rank) when any loss is not finite.
        """
        step = self.step + 1
        factor = _lr_factor(self.step, self.config.steps, self.config.lr_decay)
        for optimiser, lr in ((self.opt_g, self.config.lr_g), (self.opt_d, self.config.lr_d)):
            for group in optimiser.param_groups:
                group["lr"] = lr * factor
        critic = [self.critic_update(detailed) for _ in range(self.config.n_critic)]
        gen = self.generator_update(detailed)
        losses = self.ctx.mean(
            torch.stack([c["critic_loss"] for c in critic] + [gen["generator_loss"]])
        )
        if not bool(torch.isfinite(losses).all()):
            which = "generator" if bool(torch.isfinite(losses[:-1]).all()) else "critic"
            kept = (
                f"the last good checkpoint is {self.last_checkpoint}"
                if self.last_checkpoint
                else "no checkpoint was written yet"
            )
            raise NonFiniteLossError(
                f"training stopped at step {step}: the {which} loss is not finite "
                f"({self.config.divergence}); {kept}; try lower learning rates or a penalty"
            )
        self.step = step
        if not detailed:
            return {}
        values = {**critic[-1], **gen}
        keys = [k for k in _LOG_KEYS if k in values]
        reduced = self.ctx.mean(torch.stack([values[k].float() for k in keys]))
        return dict(zip(keys, reduced.tolist(), strict=True))

    # -- checkpoints ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly; collective (every rank must call it)."""
        return {
            "step": self.step,
            "world_size": self.ctx.world_size,
            "config": self.config.to_dict(),
            "generator": self.generator.state_dict(),
            "critic": self.critic.state_dict(),
            "ema": self.ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng_data": self.ctx.gather(self.data_rng.get_state()),
            "rng_noise": self.ctx.gather(self.noise_rng.get_state()),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state` (same number of processes)."""
        if state["world_size"] != self.ctx.world_size:
            raise ValueError(
                f"the checkpoint was written by {state['world_size']} process(es); "
                f"resume it with the same number (this run has {self.ctx.world_size})"
            )
        self.generator.load_state_dict(state["generator"])
        self.critic.load_state_dict(state["critic"])
        self.ema.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.data_rng.set_state(state["rng_data"][self.ctx.rank].clone())
        self.noise_rng.set_state(state["rng_noise"][self.ctx.rank].clone())
        self.step = int(state["step"])

    def save_checkpoint(self) -> None:
        """Write the state at this step (rank 0); collective."""
        state = self.state()
        if self.ctx.is_main:
            path = checkpoint.save(self.run_dir, self.step, state, self.config.keep_checkpoints)
            self.last_checkpoint = path

    # -- the loop ------------------------------------------------------------------------------

    def fit(self) -> dict[str, float]:
        """Train from the current step to ``config.steps``; the final evaluation (rank 0)."""
        cfg = self.config
        final: dict[str, float] = {}
        with _RunLog(self.run_dir, self.step, cfg.steps, self.ctx.is_main) as log:
            while self.step < cfg.steps:
                last = self.step + 1 == cfg.steps
                record = self.train_step(detailed=(self.step + 1) % cfg.log_every == 0 or last)
                if record:
                    log.metrics(self.step, record)
                if self.step % cfg.checkpoint_every == 0 or last:
                    self.save_checkpoint()
                if cfg.evaluate and (last or (cfg.eval_every and self.step % cfg.eval_every == 0)):
                    final = self.evaluate(log)
        self.ctx.barrier()  # the last checkpoint is on disk for every rank
        return final

    def evaluate(self, log: _RunLog) -> dict[str, float]:
        """Sample-quality metrics of the EMA generator, logged and plotted (rank 0 only)."""
        if not self.ctx.is_main:
            return {}
        cfg = self.config
        result = metrics.evaluate(
            self.ema, self.dataset, n=cfg.eval_samples, seed=cfg.seed, estimate_steps=cfg.eval_steps
        )
        log.evaluation(self.step, result)
        plots.plot_run(self.run_dir, self.ema, self.dataset, seed=cfg.seed)
        return result


class _RunLog:
    """metrics.jsonl / eval.jsonl, the terminal progress bar and TensorBoard (rank 0 only)."""

    def __init__(self, run_dir: Path, start: int, total: int, active: bool) -> None:
        self.run_dir, self.total, self.active = run_dir, total, active
        self.bar = active and sys.stderr.isatty()
        self.writer = _tensorboard(run_dir) if active else None
        self.started, self.start_step = time.perf_counter(), start
        if active:
            for name in ("metrics.jsonl", "eval.jsonl"):
                _truncate_after(run_dir / name, start)

    def __enter__(self) -> _RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            sys.stderr.write("\n")
        if self.writer is not None:
            self.writer.close()

    def _append(self, name: str, record: dict[str, Any]) -> None:
        with open(self.run_dir / name, "a") as out:
            out.write(json.dumps(record) + "\n")

    def metrics(self, step: int, values: dict[str, float]) -> None:
        if not self.active:
            return
        seconds = time.perf_counter() - self.started
        self._append("metrics.jsonl", {"step": step, **values, "seconds": seconds})
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"train/{key}", value, step)
        if self.bar:
            rate = (step - self.start_step) / max(seconds, 1e-9)
            done = round(30 * step / self.total)
            sys.stderr.write(
                f"\r[{'#' * done}{'-' * (30 - done)}] {step}/{self.total}  "
                f"D {values['critic_loss']:+.4f}  G {values['generator_loss']:+.4f}  "
                f"{rate:.0f} steps/s "
            )
            sys.stderr.flush()

    def evaluation(self, step: int, values: dict[str, float]) -> None:
        self._append("eval.jsonl", {"step": step, **values})
        write_json(self.run_dir / "evaluation.json", {"step": step, **values})
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"eval/{key}", value, step)


def _tensorboard(run_dir: Path) -> Any:
    """A TensorBoard SummaryWriter when TensorBoard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir))


def _truncate_after(path: Path, step: int) -> None:
    """Drop the records of ``path`` (JSON lines) past ``step``: a resumed run rewrites them."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
        path.write_text("".join(kept))


def _models(config: TrainConfig, dataset: Dataset) -> tuple[nn.Module, nn.Module]:
    return build_models(
        dataset.dim,
        config.latent_dim,
        config.generator_hidden,
        config.critic_hidden,
        dataset.image,
        config.channels,
        *standardisation(dataset),
    )


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {name!r} is not a torch device ({err})") from None


def train(
    config: TrainConfig, run_dir: str | Path, context: Context | None = None
) -> dict[str, float]:
    """Train a fresh run into ``run_dir``; returns the final evaluation (empty off rank 0).

    Under ``torchrun`` the run is distributed (see :mod:`fdiv.gan.distributed`).
    """
    config.validate()
    directory = Path(run_dir)
    if directory.is_dir() and checkpoint.checkpoints(directory):
        raise ValueError(
            f"{run_dir} already holds a run with checkpoints; continue it with resume "
            "(fdiv train --resume) or choose another output directory"
        )
    trainer = Trainer(config, directory, context)
    if trainer.ctx.is_main:
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.jsonl", "eval.jsonl"):
            (directory / name).unlink(missing_ok=True)
        write_json(directory / "config.json", config.to_dict())
    return trainer.fit()


def resume(
    run_dir: str | Path, steps: int | None = None, context: Context | None = None
) -> dict[str, float]:
    """Continue the run in ``run_dir`` from its latest checkpoint, to ``steps`` if given."""
    path = checkpoint.latest(run_dir)
    state = checkpoint.load(path)
    config = TrainConfig.from_dict(state["config"])
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < state["step"]:
            raise ValueError(
                f"steps must be an integer >= the checkpoint's step {state['step']}, got {steps!r}"
            )
        config.steps = steps
    trainer = Trainer(config, run_dir, context)
    trainer.load_state(state)
    trainer.last_checkpoint = path
    if trainer.ctx.is_main:
        write_json(Path(run_dir) / "config.json", config.to_dict())
    return trainer.fit()


def load_generator(run_dir: str | Path, use_ema: bool = True) -> tuple[nn.Module, TrainConfig]:
    """The (EMA) generator of the latest checkpoint in ``run_dir``, on the CPU, in eval mode."""
    state = checkpoint.load(checkpoint.latest(run_dir))
    config = TrainConfig.from_dict(state["config"])
    generator, _ = _models(config, load_dataset(config.data))
    generator.load_state_dict(state["ema" if use_ema else "generator"])
    return generator.eval().requires_grad_(False), config
