"""course_lib.training: the one loop (a shortened run whose loss falls, determinism, exact resume, EMA),
and the diffusion loss against hand-written formulas and diffusers' get_velocity."""

from __future__ import annotations

import functools

import pytest
import torch
from diffusers import DDPMScheduler

from course_lib import checkpoints, data, models, schedules, training
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")

AB = schedules.NoiseSchedule("linear", 1000).alpha_bars
SMALL = dict(hidden_dim=32, num_layers=2, time_embed_dim=16)


def moons(n=2000, seed=0):
    return data.two_moons(n, generator=torch.Generator().manual_seed(seed))


def short_run(steps=30, seed=0, **config):
    model = models.time_mlp(seed=0, **SMALL)
    cfg = training.TrainConfig(steps=steps, batch_size=64, seed=seed, **config)
    return training.train(model, moons(), functools.partial(training.diffusion_loss, alpha_bars=AB), cfg,
                          device="cpu", progress=False)


def flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_shortened_2d_training_loss_falls():
    state = short_run(steps=300, lr=3e-3)
    first, last = sum(state.losses[:50]) / 50, sum(state.losses[-50:]) / 50
    assert state.step == 300 and len(state.losses) == 300
    assert last < 0.75 * first, (first, last)


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = short_run(seed=0), short_run(seed=0), short_run(seed=1)
    assert torch.equal(flat(a.model), flat(b.model)) and a.losses == b.losses
    assert not torch.equal(flat(a.model), flat(c.model))


def test_global_rng_is_not_used():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    short_run(steps=5)
    assert torch.equal(torch.get_rng_state(), before)


def test_resume_from_saved_state_is_bit_exact(tmp_path):
    full = short_run(steps=40)
    half = short_run(steps=20)
    checkpoints.save_training_state(half, tmp_path / "run")
    model = models.time_mlp(seed=5, **SMALL)  # other initial weights: all must come from the folder
    cfg = training.TrainConfig(steps=40, batch_size=64)
    resumed = training.train(model, moons(), functools.partial(training.diffusion_loss, alpha_bars=AB), cfg,
                             device="cpu", progress=False, resume=tmp_path / "run")
    assert resumed.step == 40 and resumed.losses == full.losses
    assert torch.equal(flat(resumed.model), flat(full.model))
    assert torch.equal(flat(resumed.ema_model), flat(full.ema_model))


def test_resume_from_state_object_continues():
    state = short_run(steps=10)
    again = training.train(state.model, moons(), functools.partial(training.diffusion_loss, alpha_bars=AB),
                           training.TrainConfig(steps=20, batch_size=64), device="cpu", progress=False, resume=state)
    full = short_run(steps=20)
    assert again.step == 20 and torch.equal(flat(again.model), flat(full.model))


def test_ema_follows_its_formula():
    model = models.time_mlp(seed=0, **SMALL)
    ema = training.make_ema(model)
    before = flat(ema).clone()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    training.update_ema(ema, model, 0.9)
    torch.testing.assert_close(flat(ema), 0.9 * before + 0.1 * flat(model))
    assert training.ema_decay_at(0, 0.999) == pytest.approx(0.1)
    assert training.ema_decay_at(10**6, 0.999) == 0.999


def test_config_learning_rate_schedule_and_errors():
    cfg = training.TrainConfig(steps=100, lr=1.0, lr_warmup_steps=10, lr_schedule="cosine")
    assert cfg.lr_at(0) == pytest.approx(0.1) and cfg.lr_at(9) == pytest.approx(1.0)
    assert cfg.lr_at(10) == pytest.approx(1.0) and cfg.lr_at(100) == pytest.approx(0.0, abs=1e-12)
    assert training.TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(CourseInputError, match="lr_schedule"):
        training.TrainConfig(lr_schedule="linear-ish")
    with pytest.raises(CourseInputError, match="ema_decay"):
        training.TrainConfig(ema_decay=1.0)


def _draws(batch_size, shape, seed, cond_dropout=0.0):
    """Replay the generator the way diffusion_loss draws from it: t, then eps, then the dropout mask."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, 1000, (batch_size,), generator=g)
    eps = torch.randn(shape, generator=g)
    drop = torch.rand(batch_size, generator=g) < cond_dropout if cond_dropout else None
    return t, eps, drop


class Recorder(torch.nn.Module):
    """Returns a fixed function of its input and remembers what it was called with."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, xt, t, class_labels=None):
        self.seen = (xt, t, class_labels)
        return self.w * xt


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_diffusion_loss_matches_the_formula_and_diffusers_velocity(prediction_type, worst):
    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(3))
    model = Recorder()
    loss = training.diffusion_loss(model, x0, torch.Generator().manual_seed(11), alpha_bars=AB,
                                   prediction_type=prediction_type)
    t, eps, _ = _draws(16, x0.shape, 11)
    ab = AB[t][:, None]
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    torch.testing.assert_close(model.seen[0], xt)
    assert torch.equal(model.seen[1], t)
    sched = DDPMScheduler(num_train_timesteps=1000)
    sched.alphas_cumprod = AB.clone()
    target = {"epsilon": eps, "sample": x0, "v_prediction": sched.get_velocity(x0, eps, t)}[prediction_type]
    expected = ((0.5 * xt - target) ** 2).mean()
    worst("training.diffusion_loss vs formula/diffusers velocity", (loss - expected).abs().item())
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=1e-5)


def test_label_dropout_replaces_labels_by_the_null_class():
    x0 = torch.randn(4000, 2)
    labels = torch.randint(0, 10, (4000,), generator=torch.Generator().manual_seed(0))
    model = Recorder()
    training.diffusion_loss(model, {"x0": x0, "class_labels": labels}, torch.Generator().manual_seed(2),
                            alpha_bars=AB, cond_dropout=0.2, null_cond={"class_labels": 10})
    _, _, drop = _draws(4000, x0.shape, 2, cond_dropout=0.2)
    seen = model.seen[2]
    assert torch.equal(seen[drop], torch.full((int(drop.sum()),), 10))
    assert torch.equal(seen[~drop], labels[~drop])
    assert 0.17 < drop.float().mean() < 0.23
    with pytest.raises(CourseInputError, match="null_cond"):
        training.diffusion_loss(model, {"x0": x0, "class_labels": labels}, None, alpha_bars=AB, cond_dropout=0.2)


def test_null_embedding_dropout_for_text_conditioning():
    emb = torch.randn(6, 3, 4)
    null = torch.zeros(1, 3, 4)
    drop = torch.tensor([True, False, True, False, False, True])
    out = training.drop_condition({"encoder_hidden_states": emb}, {"encoder_hidden_states": null}, drop)
    assert torch.equal(out["encoder_hidden_states"][drop], torch.zeros(3, 3, 4))
    assert torch.equal(out["encoder_hidden_states"][~drop], emb[~drop])


def test_any_loss_function_plugs_in_and_frozen_parameters_stay_frozen():
    # A regression y = 3x + 1 with a frozen extra layer: the loop knows nothing about diffusion.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1, 1), torch.nn.Linear(1, 1))
    model[1].requires_grad_(False)
    frozen = flat(model[1]).clone()
    x = torch.linspace(-1, 1, 256)[:, None]
    batch = {"x": x, "y": 3 * x + 1}

    def mse(m, b, generator):
        return ((m(b["x"]) - b["y"]) ** 2).mean()

    state = training.train(model, batch, mse, training.TrainConfig(steps=200, batch_size=32, lr=0.05, ema_decay=0),
                           device="cpu", progress=False)
    assert state.ema_model is None and state.sampling_model is model
    assert state.losses[-1] < 0.05 * state.losses[0]
    assert torch.equal(flat(model[1]), frozen)


def test_iterable_and_callable_data_sources():
    batches = [moons(32, seed=s) for s in range(3)]  # a list cycles, like a DataLoader's epochs
    model = models.time_mlp(seed=0, **SMALL)
    state = training.train(model, batches, None, training.TrainConfig(steps=7, ema_decay=0), device="cpu",
                           progress=False)
    assert state.step == 7
    state = training.train(models.time_mlp(seed=0, **SMALL), lambda g: data.two_moons(32, generator=g), None,
                           training.TrainConfig(steps=3), device="cpu", progress=False)
    assert state.step == 3


def test_bad_inputs_get_clear_errors(monkeypatch):
    with pytest.raises(CourseInputError, match="data must be"):
        training.train(models.time_mlp(**SMALL), 42, None, training.TrainConfig(steps=1), device="cpu", progress=False)
    with pytest.raises(CourseInputError, match="x0"):
        training.diffusion_loss(Recorder(), {"images": torch.zeros(2, 2)}, None, alpha_bars=AB)

    def nan_loss(m, b, g):
        return (m(b, torch.zeros(len(b), dtype=torch.long)) * float("nan")).mean()

    with pytest.raises(CourseInputError, match="lower the learning rate"):
        training.train(models.time_mlp(**SMALL), moons(), nan_loss, training.TrainConfig(steps=2), device="cpu",
                       progress=False)


def test_progress_bar_is_off_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert not training._progress_enabled(True)
    monkeypatch.delenv("CI")
    assert training._progress_enabled(True) and not training._progress_enabled(False)


def test_smooth_is_a_running_mean():
    assert training.smooth([1, 2, 3, 4], window=2) == [1, 1.5, 2.5, 3.5]
