"""The training loop: loss wiring, every objective, exact resume, checkpoints, the NaN guard."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from gan_testing import tiny_config

import fdiv
from fdiv.divergences import registry
from fdiv.gan import checkpoint
from fdiv.gan.trainer import NonFiniteLossError, TrainConfig, Trainer, resume, train

OBJECTIVES = [*(d.name for d in registry.registered()), "alpha(2)", "alpha(-1)", "wgan-gp", "hinge"]


def test_critic_step_is_fdiv_critic_loss_on_the_same_batch(tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(divergence="gan"), tmp_path)
    critic, generator = copy.deepcopy(trainer.critic), copy.deepcopy(trainer.generator)
    data_rng, noise_rng = torch.Generator(), torch.Generator()
    data_rng.set_state(trainer.data_rng.get_state())
    noise_rng.set_state(trainer.noise_rng.get_state())

    loss = trainer.critic_update()["critic_loss"]

    x_real = trainer.dataset.sample(32, data_rng)
    x_fake = generator(torch.randn(32, 4, generator=noise_rng)).detach()
    expected = fdiv.critic_loss(critic(x_real), critic(x_fake), "gan")
    expected.backward()
    assert torch.equal(loss, expected.detach())
    for p_trained, p_copy in zip(trainer.critic.parameters(), critic.parameters(), strict=True):
        torch.testing.assert_close(p_trained.grad, p_copy.grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_one_step_of_each_objective_runs_and_moves_both_networks(tmp_path: Path, name: str) -> None:
    config = tiny_config(divergence=name, generator_objective="minimax", penalty="auto")
    trainer = Trainer(config, tmp_path)
    before = [copy.deepcopy(m.state_dict()) for m in (trainer.generator, trainer.critic)]
    record = trainer.train_step(detailed=True)
    assert set(record) >= {"critic_loss", "bound_p", "bound_q", "generator_loss", "grad_norm_g"}
    assert all(torch.isfinite(torch.tensor(v)) for v in record.values())
    for module, old in zip((trainer.generator, trainer.critic), before, strict=True):
        assert any(not torch.equal(v, old[k]) for k, v in module.state_dict().items())
    assert record["penalty"] > 0  # wgan-gp for wgan-gp, r1 for the others


@pytest.mark.parametrize("penalty", ["r1", "wgan-gp"])
def test_training_does_not_depend_on_the_data_scale(tmp_path: Path, penalty: str) -> None:
    base = np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32) + 3.0
    runs = []
    for factor in (1.0, 10.0):
        path = tmp_path / f"x{factor:g}.npy"
        np.save(path, base * factor)
        trainer = Trainer(
            tiny_config(data=str(path), penalty=penalty, steps=3), tmp_path / path.stem
        )
        records = [trainer.train_step(detailed=True) for _ in range(3)]
        runs.append((trainer, records))
    (small, small_log), (large, large_log) = runs
    for key in ("critic_loss", "penalty", "generator_loss"):
        torch.testing.assert_close(
            torch.tensor([r[key] for r in large_log]), torch.tensor([r[key] for r in small_log])
        )
    z = torch.randn(64, 4)
    torch.testing.assert_close(large.generator(z), 10.0 * small.generator(z))


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = checkpoint.load(checkpoint.latest(run_dir))
    return {
        f"{part}.{k}": v for part in ("generator", "critic", "ema") for k, v in state[part].items()
    }


def test_resumed_run_is_bitwise_the_uninterrupted_one(tmp_path: Path) -> None:
    config = tiny_config(steps=6, checkpoint_every=3, penalty="r1", lr_decay=0.5)
    train(config, tmp_path / "straight")
    interrupted = Trainer(config, tmp_path / "cut")
    (tmp_path / "cut").mkdir()
    for _ in range(3):
        interrupted.train_step()
    interrupted.save_checkpoint()
    del interrupted
    resume(tmp_path / "cut")
    straight, cut = _weights(tmp_path / "straight"), _weights(tmp_path / "cut")
    assert straight.keys() == cut.keys()
    assert all(torch.equal(straight[k], cut[k]) for k in straight)


def test_checkpoints_keep_the_newest_and_load_weights_only(tmp_path: Path) -> None:
    train(tiny_config(steps=7, checkpoint_every=2, keep_checkpoints=2), tmp_path)
    assert [step for step, _ in checkpoint.checkpoints(tmp_path)] == [6, 7]
    state = torch.load(checkpoint.latest(tmp_path), weights_only=True)
    assert state["step"] == 7 and state["rng_data"].dtype == torch.uint8
    assert TrainConfig.from_dict(state["config"]) == tiny_config(
        steps=7, checkpoint_every=2, keep_checkpoints=2
    )
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 7


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(steps=10), tmp_path)
    for _ in range(2):
        trainer.train_step()
    trainer.save_checkpoint()
    with torch.no_grad():
        trainer.critic.net[-1].bias.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"at step 3: the critic loss is not finite"):
        trainer.train_step()
    assert checkpoint.latest(tmp_path).name == "ckpt-00000002.pt"
    assert torch.isfinite(
        checkpoint.load(checkpoint.latest(tmp_path))["critic"]["net.4.bias"]
    ).all()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data": "ring9"}, "dataset 'ring9' is unknown"),
        ({"steps": -5}, "steps must be a positive integer"),
        ({"divergence": "jsd2"}, "divergence 'jsd2' is unknown"),
        ({"generator_objective": "saturating"}, "generator objective 'saturating' is unknown"),
        ({"betas_d": (0.5, 1.5)}, "betas_d must be two numbers in"),
        ({"penalty": "gp"}, "penalty 'gp' is unknown"),
        ({"amp": True}, "amp .* needs a CUDA device"),
        ({"top_k": 0.0}, "top_k must be a fraction in"),
        ({"top_k": 1.5}, "top_k must be a fraction in"),
    ],
)
def test_bad_configuration_is_a_clear_value_error(
    tmp_path: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        train(tiny_config(**overrides), tmp_path / "run")


def test_image_data_take_their_own_defaults_before_the_losses() -> None:
    # the digits row (DATA_DEFAULTS) wins over the loss rows; what a user gives wins over both
    for loss in ("kl", "wgan-gp"):
        config = TrainConfig(data="digits", divergence=loss)
        assert (config.steps, config.batch_size, config.channels, config.r1_weight) == (
            3000, 128, 32, 1.0,
        )  # fmt: skip
    assert TrainConfig(data="digits", divergence="wgan-gp").n_critic == 5  # the loss row stays
    toy = TrainConfig(data="grid25", divergence="kl")
    assert (toy.steps, toy.batch_size, toy.channels, toy.r1_weight) == (22000, 256, 64, 0.01)
    given = TrainConfig(data="digits", steps=10, r1_weight=0.5, batch_size=64)
    assert (given.steps, given.r1_weight, given.batch_size) == (10, 0.5, 64)
    assert TrainConfig.from_dict(given.to_dict()) == given


def test_resume_needs_a_checkpoint_and_train_refuses_to_overwrite(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no checkpoint in this directory"):
        resume(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        resume(tmp_path / "nowhere")
    train(tiny_config(steps=2), tmp_path / "run")
    with pytest.raises(ValueError, match="already holds a run"):
        train(tiny_config(steps=2), tmp_path / "run")


@pytest.mark.parametrize("penalty", ["r1", "wgan-gp"])
def test_eager_backend_runs_every_loss_eagerly_with_the_same_numbers(
    tmp_path: Path, penalty: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """loss_backend="eager": the critic, generator and penalty all use plain autograd, and the
    logged bound terms are the fused path's numbers on the same outputs."""
    fused = Trainer(tiny_config(divergence="js", penalty=penalty), tmp_path / "fused")
    fused_record = fused.train_step(detailed=True)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a fused loss ran under loss_backend='eager'")

    import fdiv.gan.objectives as objectives

    monkeypatch.setattr(objectives, "gradient_penalty", refuse)
    monkeypatch.setattr(objectives, "generator_loss", refuse)
    config = tiny_config(divergence="js", penalty=penalty, loss_backend="eager")
    eager_record = Trainer(config, tmp_path / "eager").train_step(detailed=True)
    assert eager_record.keys() == fused_record.keys()
    for key, value in fused_record.items():
        assert eager_record[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_logged_bound_terms_are_the_critic_loss_terms(tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(divergence="kl"), tmp_path)
    record = trainer.train_step(detailed=True)
    assert record["critic_loss"] == pytest.approx(record["bound_q"] - record["bound_p"], abs=1e-6)


def test_top_k_generator_step_is_the_loss_of_the_best_rated_samples(tmp_path: Path) -> None:
    """At step s of S the generator trains on ceil((1 - (1 - top_k) s / S) B) samples: those with
    the highest critic outputs (the same gradient as the loss of just those samples)."""
    trainer = Trainer(tiny_config(divergence="js", top_k=0.5, steps=4), tmp_path)
    trainer.step = 2  # fraction 1 - 0.5 * 2 / 4 = 0.75 of 32: 24 samples
    generator = copy.deepcopy(trainer.generator)
    noise_rng = torch.Generator()
    noise_rng.set_state(trainer.noise_rng.get_state())

    loss = trainer.generator_update()["generator_loss"]

    v_q = trainer.critic(generator(torch.randn(32, 4, generator=noise_rng)))
    kept = v_q.sort(descending=True).values[:24]
    expected = fdiv.generator_loss(kept, "js")
    expected.backward()
    torch.testing.assert_close(loss, expected.detach())
    assert not torch.allclose(expected, fdiv.generator_loss(v_q, "js"))
    grads = [p.grad for p in generator.parameters()]
    assert all(g is not None for g in grads)


def test_lazy_penalty_is_the_full_penalty_weighted_k_times_on_every_kth_update(
    tmp_path: Path,
) -> None:
    lazy = tiny_config(penalty="r1", r1_weight=0.005, penalty_every=2, n_critic=3)

    def critic_after_one_update(config: TrainConfig, penalised: bool = True) -> torch.nn.Module:
        trainer = Trainer(config, tmp_path / str(len(list(tmp_path.iterdir()))))
        trainer.critic_update(penalised=penalised)
        return trainer.critic

    penalised = critic_after_one_update(lazy)
    skipped = critic_after_one_update(lazy, penalised=False)
    pairs = [
        (penalised, critic_after_one_update(tiny_config(penalty="r1", penalty_every=1))),
        (skipped, critic_after_one_update(tiny_config(penalty="none"))),
    ]
    for lazy_critic, full in pairs:
        for p, q in zip(lazy_critic.parameters(), full.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    pairs_differ = zip(penalised.parameters(), skipped.parameters(), strict=True)
    assert any(not torch.equal(p, q) for p, q in pairs_differ)

    trainer, flags = Trainer(lazy, tmp_path / "schedule"), []
    update = trainer.critic_update

    def record(detailed: bool, penalised: bool) -> dict[str, torch.Tensor]:
        flags.append(penalised)
        return update(detailed, penalised)

    trainer.critic_update = record  # type: ignore[method-assign]
    trainer.train_step()
    trainer.train_step()
    assert flags == [True, False, True, False, True, False]  # updates 0-5 of n_critic 3, k = 2
