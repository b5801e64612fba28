"""The GAN training loop: k critic steps, then one generator step, checkpointed and resumable.

A run lives in a directory: ``config.json`` (the :class:`TrainConfig`), ``metrics.jsonl`` (one
line per logged step), ``eval.jsonl`` / ``evaluation.json`` (sample-quality metrics),
``ckpt-<step>.pt`` (the newest ``keep_checkpoints``), PNG plots, and TensorBoard events when
TensorBoard is installed. One process trains in a directory at a time (``.lock``, see
:mod:`fdiv.gan.rundir`); ``train`` only writes into a new or empty directory (or restarts a run
that never reached a checkpoint), ``resume`` continues from the newest checkpoint that loads and
first redoes an evaluation that a kill interrupted at that step.

Reproducibility: all randomness of the loop comes from two explicit CPU ``torch.Generator``s per
rank (one for data, one for latent codes and penalty interpolation), whose states are
checkpointed with the networks, the EMA and both Adam states; the networks use no dropout and
the global RNG is only used, inside ``fork_rng``, to initialise the weights. So on the CPU a run
interrupted and resumed ends with bitwise the same weights as one that ran straight through.
"""

from __future__ import annotations

import copy
import math
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fdiv.device import resolve_device
from fdiv.gan import checkpoint, metrics, plots
from fdiv.gan.config import TrainConfig, stored_config
from fdiv.gan.data import Dataset, load_dataset, standardisation
from fdiv.gan.distributed import Context, from_environment, single
from fdiv.gan.models import build_models
from fdiv.gan.objectives import objective
from fdiv.gan.rundir import check_new_run_directory, run_lock
from fdiv.gan.runlog import RunLog
from fdiv.io import is_integer
from fdiv.optim import adam

__all__ = [
    "NonFiniteLossError",
    "RunStartError",
    "TrainConfig",
    "Trainer",
    "load_generator",
    "resume",
    "train",
]


class NonFiniteLossError(RuntimeError):
    """Training stopped on a NaN or infinite loss; the message names the step and checkpoint."""


class RunStartError(ValueError):
    """Rank 0 could not start the run (the run directory is locked or not new): what the other
    ranks raise instead of waiting for it."""


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
        self.ctx = (
            context or from_environment(config.device) or single(resolve_device(config.device))
        )
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
        self.opt_g = adam(generator.parameters(), config.lr_g, betas=config.betas_g)
        self.opt_d = adam(critic.parameters(), config.lr_d, betas=config.betas_d)
        rank = self.ctx.rank
        self.data_rng = torch.Generator().manual_seed(_seed(config.seed, rank, 0))
        self.noise_rng = torch.Generator().manual_seed(_seed(config.seed, rank, 1))
        self.step = 0
        self.last_checkpoint: Path | None = None
        self.last_penalty: Tensor | None = None  # of the latest penalised critic update

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
        weight = self.config.gp_weight if self.penalty == "wgan-gp" else self.config.r1_weight
        return self.objective.penalty(grads, self.penalty, weight)

    def critic_update(self, detailed: bool = False, penalised: bool = True) -> dict[str, Tensor]:
        """One Adam step of the critic on a fresh batch; its loss (and more when ``detailed``).

        A ``penalised`` update adds the gradient penalty, weighted ``penalty_every`` times; a
        ``detailed`` one reports the penalty at the configured weight of the latest penalised
        update (computed here only when none happened yet in this process).
        """
        x_real, z = self._batch()
        with torch.no_grad(), self._autocast():
            x_fake = self.generator(z).float()
        with self._autocast():
            v = self.critic_ddp(torch.cat([x_real, x_fake])).float()
        v_p, v_q = v[: len(x_real)], v[len(x_real) :]
        loss, term_p, term_q = self.objective.critic(v_p, v_q)
        out = {"critic_loss": loss.detach()}
        total = loss
        if self.penalty != "none" and penalised:
            penalty = self._penalty(x_real, x_fake)
            self.last_penalty = penalty.detach()
            total = loss + self.config.penalty_every * penalty
        elif self.penalty != "none" and detailed and self.last_penalty is None:
            self.last_penalty = self._penalty(x_real, x_fake).detach()
        if self.penalty != "none" and detailed:
            out["penalty"] = self.last_penalty
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        if detailed:
            out["bound_p"], out["bound_q"] = term_p, term_q
            out["grad_norm_d"] = _grad_norm(self.critic)
        self.opt_d.step()
        return out

    def _kept(self) -> int:
        """How many generated samples per batch the generator trains on (top-k training).

        The fraction falls linearly from 1 at the first step to ``top_k`` at the last.
        """
        cfg = self.config
        fraction = 1.0 - (1.0 - cfg.top_k) * self.step / cfg.steps
        return max(1, math.ceil(fraction * cfg.batch_size))

    def generator_update(self, detailed: bool = False) -> dict[str, Tensor]:
        """One Adam step of the generator (the critic frozen), then the EMA update.

        The loss takes the ``_kept()`` generated samples with the highest critic outputs.
        """
        z = self._codes(self.config.batch_size)
        self.critic.requires_grad_(False)
        try:
            with self._autocast():
                v_q = self.critic(self.generator_ddp(z)).float()
            kept = self._kept()
            if kept < len(v_q):
                v_q = v_q.topk(kept).values
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
        cfg = self.config
        critic = [
            self.critic_update(detailed, (self.step * cfg.n_critic + i) % cfg.penalty_every == 0)
            for i in range(cfg.n_critic)
        ]
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

    def load_state(self, state: dict[str, Any], source: str = "the checkpoint") -> None:
        """Continue from a :meth:`state` (same number of processes); errors name ``source``."""
        if state["world_size"] != self.ctx.world_size:
            raise ValueError(
                f"{source} was written by {state['world_size']} process(es); "
                f"resume it with the same number (this run has {self.ctx.world_size})"
            )
        try:
            self.generator.load_state_dict(state["generator"])
            self.critic.load_state_dict(state["critic"])
            self.ema.load_state_dict(state["ema"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.data_rng.set_state(state["rng_data"][self.ctx.rank].clone())
            self.noise_rng.set_state(state["rng_noise"][self.ctx.rank].clone())
            self.step = int(state["step"])
        except (RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
            raise _mismatch(source, err) from None

    def save_checkpoint(self) -> None:
        """Write the state at this step (rank 0); collective."""
        state = self.state()
        if self.ctx.is_main:
            path = checkpoint.save(self.run_dir, self.step, state, self.config.keep_checkpoints)
            self.last_checkpoint = path

    # -- the loop ------------------------------------------------------------------------------

    def _evaluates(self, step: int) -> bool:
        """Whether the run evaluates at ``step`` (at --eval-every and at the end)."""
        cfg = self.config
        periodic = bool(cfg.eval_every) and step % cfg.eval_every == 0
        return cfg.evaluate and step > 0 and (step == cfg.steps or periodic)

    def fit(self, fresh: bool = False) -> dict[str, float]:
        """Train from the current step to ``config.steps``; the final evaluation (rank 0).

        Rank 0 holds the run directory's lock throughout; a ``fresh`` run checks the directory
        again under the lock and clears the logs of an earlier run without checkpoints. An
        evaluation due at the starting step but missing from eval.jsonl (a kill interrupted
        it) is done first.
        """
        main = self.ctx.is_main
        with ExitStack() as held:
            refused: Exception | None = None
            try:
                if main:
                    self.run_dir.mkdir(parents=True, exist_ok=True)
                held.enter_context(run_lock(self.run_dir, main))
                if fresh and main:
                    check_new_run_directory(self.run_dir)  # no other process started it meanwhile
            except (OSError, ValueError) as err:
                refused = err
            # every rank learns that rank 0 cannot start: the others would wait for it forever
            # in their first update
            if not self.ctx.all_agree(refused is None):
                error = refused or RunStartError(
                    f"{self.run_dir}: rank 0 could not start the run (its error says why)"
                )
                # no reference cycle error -> traceback -> this frame -> error: the trainer
                # (its DDP wrappers, the process group) goes with the error, not at exit
                refused = None
                try:
                    raise error
                finally:
                    del error
            if fresh and main:
                for name in ("metrics.jsonl", "eval.jsonl", "evaluation.json"):
                    (self.run_dir / name).unlink(missing_ok=True)
            final = self._loop()
        self.ctx.barrier()  # the last checkpoint is on disk for every rank
        return final

    def _loop(self) -> dict[str, float]:
        cfg = self.config
        final: dict[str, float] = {}
        with RunLog(self.run_dir, self.step, cfg.steps, self.ctx.is_main, cfg.to_dict()) as log:
            if self._evaluates(self.step) and self.step not in log.evaluated:
                final = self.evaluate(log)
            while self.step < cfg.steps:
                last = self.step + 1 == cfg.steps
                record = self.train_step(detailed=(self.step + 1) % cfg.log_every == 0 or last)
                if record:
                    log.metrics(self.step, record)
                if self.step % cfg.checkpoint_every == 0 or last:
                    self.save_checkpoint()
                if self._evaluates(self.step):
                    final = self.evaluate(log)
        return final

    def evaluate(self, log: RunLog) -> dict[str, float]:
        """Sample-quality metrics of the EMA generator, logged and plotted (rank 0 only)."""
        if not self.ctx.is_main:
            return {}
        cfg = self.config
        result = metrics.evaluate(
            self.ema, self.dataset, n=cfg.eval_samples, seed=cfg.seed, estimate_steps=cfg.eval_steps
        )
        plots.plot_run(self.run_dir, self.ema, self.dataset, seed=cfg.seed)
        log.evaluation(self.step, result)  # last: the record says the evaluation is complete
        return result


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


def _mismatch(source: str, err: BaseException) -> ValueError:
    """The error for a checkpoint whose entries do not fit the networks of its own config."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ValueError(f"{source}: its weights do not match its config ({reason})")


def train(
    config: TrainConfig, run_dir: str | Path, context: Context | None = None
) -> dict[str, float]:
    """Train a fresh run into ``run_dir``; returns the final evaluation (empty off rank 0).

    ``run_dir`` must be new, empty, or a run without checkpoints (restarted from scratch).
    Under ``torchrun`` the run is distributed (see :mod:`fdiv.gan.distributed`).
    """
    config.validate()
    directory = Path(run_dir)
    check_new_run_directory(directory)
    return Trainer(config, directory, context).fit(fresh=True)


def resume(
    run_dir: str | Path, steps: int | None = None, context: Context | None = None
) -> dict[str, float]:
    """Continue the run in ``run_dir`` from its latest checkpoint, to ``steps`` if given.

    The newest checkpoint that loads is used (see :func:`checkpoint.load_latest`); nothing in
    the directory changes before the checkpoint and the logs have been read.
    """
    path, state = checkpoint.load_latest(run_dir)
    config = stored_config(path, state)
    if steps is not None:
        if not is_integer(steps) or steps < state["step"]:
            raise ValueError(
                f"steps must be an integer >= the checkpoint's step {state['step']}, got {steps!r}"
            )
        config.steps = int(steps)
    trainer = Trainer(config, run_dir, context)
    trainer.load_state(state, str(path))
    trainer.last_checkpoint = path
    return trainer.fit()


def load_generator(run_dir: str | Path, use_ema: bool = True) -> tuple[nn.Module, TrainConfig]:
    """The (EMA) generator of the latest checkpoint in ``run_dir``, on the CPU, in eval mode.

    The newest checkpoint that loads is used (see :func:`checkpoint.load_latest`).
    """
    path, state = checkpoint.load_latest(run_dir)
    config = stored_config(path, state)
    generator, _ = _models(config, load_dataset(config.data))
    try:
        generator.load_state_dict(state["ema" if use_ema else "generator"])
    except (RuntimeError, TypeError, AttributeError) as err:
        raise _mismatch(str(path), err) from None
    return generator.eval().requires_grad_(False), config
