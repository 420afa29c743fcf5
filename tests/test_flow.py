"""course_lib.flow: the straight path and its conversions against hand-written formulas and diffusers,
generate against diffusers' FlowMatchEulerDiscreteScheduler step for step, a shortened training run
that learns the two moons, reflow, and the errors bad input gets."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

from course_lib import data, flow, metrics, models, schedules, training
from course_lib import noise as noise_lib
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-5
STEP_COUNTS = [1, 2, 5, 28]


def draws(shape=(64, 2), seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g, dtype=dtype)
    eps = torch.randn(shape, generator=g, dtype=dtype)
    sigma = torch.rand(shape[0], 1, generator=g, dtype=dtype)
    return x0, eps, sigma


def moons(n, generator):
    return data.two_moons(n, generator)


def distance(x):
    return metrics.distance_to_data(x, moons, generator=torch.Generator().manual_seed(3))


# ----------------------------------------------------------------------------------------------
# Closed forms
# ----------------------------------------------------------------------------------------------

def test_interpolate_is_the_straight_line_and_velocity_its_derivative():
    x0, eps, sigma = draws()
    x = flow.interpolate(x0, eps, sigma)
    torch.testing.assert_close(x, x0 + sigma * (eps - x0), rtol=0, atol=1e-12)
    torch.testing.assert_close(flow.interpolate(x0, eps, 0.0), x0, rtol=0, atol=0)
    torch.testing.assert_close(flow.interpolate(x0, eps, 1.0), eps, rtol=0, atol=0)
    above, below = (sigma + 1e-6).clamp(max=1), (sigma - 1e-6).clamp(min=0)  # a central difference in float64
    numeric = (flow.interpolate(x0, eps, above) - flow.interpolate(x0, eps, below)) / (above - below)
    torch.testing.assert_close(flow.velocity_target(x0, eps), numeric, rtol=0, atol=1e-8)


def test_velocity_conversions_recover_x0_and_eps():
    x0, eps, sigma = draws()
    x, v = (1 - sigma) * x0 + sigma * eps, eps - x0
    torch.testing.assert_close(flow.x0_from_velocity(v, x, sigma), x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(flow.eps_from_velocity(v, x, sigma), eps, rtol=0, atol=1e-12)
    # an Euler step to sigma = 0 lands on x0_hat, and to sigma' on the line itself
    step = flow.euler_step(v, x, sigma, 0.0)
    torch.testing.assert_close(step.x_prev, x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(step.x0_hat, x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(flow.euler_step(v, x, sigma, sigma / 2).x_prev, (1 - sigma / 2) * x0 + sigma / 2 * eps,
                               rtol=0, atol=1e-12)


def test_flow_point_has_the_diffusion_snr_and_is_x_t_rescaled():
    ab = schedules.NoiseSchedule("linear", 1000).alpha_bars.double()
    sigma = flow.sigma_from_alpha_bar(ab)
    # the same signal-to-noise ratio: (1 - sigma)^2 / sigma^2 = ab / (1 - ab)
    torch.testing.assert_close(((1 - sigma) / sigma) ** 2, ab / (1 - ab), rtol=1e-10, atol=0)
    torch.testing.assert_close(flow.alpha_bar_from_sigma(sigma), ab, rtol=1e-10, atol=0)
    assert float(flow.sigma_from_alpha_bar(1.0)) == 0.0 and float(flow.sigma_from_alpha_bar(0.0)) == 1.0
    # x_t from the course's forward process, rescaled, is the flow point of the same x0 and eps
    x0, eps, _ = draws((6, 2))
    t = torch.tensor([0, 10, 250, 500, 900, 999])
    xt = schedules.q_sample(x0, t, ab, noise=eps)
    ab_t = schedules.gather(ab, t, x0)
    torch.testing.assert_close(flow.x_sigma_from_xt(xt, ab_t), flow.interpolate(x0, eps, sigma[t][:, None]),
                               rtol=0, atol=1e-12)


def test_velocity_from_diffusers_v_prediction():
    sched = DDPMScheduler(num_train_timesteps=1000)
    x0, eps, _ = draws((8, 2), dtype=torch.float32)
    t = torch.tensor([0, 1, 100, 300, 500, 700, 900, 999])
    xt = sched.add_noise(x0, eps, t)
    v_diffusion = sched.get_velocity(x0, eps, t)  # sqrt(ab) eps - sqrt(1 - ab) x0, diffusers' own table
    ab_t = sched.alphas_cumprod[t][:, None]
    torch.testing.assert_close(flow.velocity_from_v_diffusion(v_diffusion, xt, ab_t), eps - x0, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Sampling against diffusers' FlowMatchEulerDiscreteScheduler
# ----------------------------------------------------------------------------------------------

def diffusers_scheduler(num_steps):
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    sched.set_timesteps(num_steps)
    return sched


@pytest.mark.parametrize("num_steps", STEP_COUNTS + [100, 1000])
def test_inference_sigmas_are_diffusers(num_steps):
    sched = diffusers_scheduler(num_steps)
    sigmas = flow.inference_sigmas(num_steps)
    assert torch.equal(sigmas, sched.sigmas)
    assert torch.equal(sigmas[:-1] * 1000, sched.timesteps)


@pytest.mark.parametrize("num_steps", STEP_COUNTS)
def test_generate_matches_diffusers_step_for_step(num_steps, worst):
    model = models.time_mlp(seed=1, prediction_type="flow")
    calls = []

    def counting(x, timestep):  # a plain callable: taken as a velocity field
        calls.append(timestep)
        return model(x, timestep)

    out = flow.generate(counting, (32, 2), num_steps, generator=torch.Generator().manual_seed(0), keep_trajectory=True)
    assert len(calls) == flow.evaluations(num_steps) == num_steps
    assert len(out.trajectory) == num_steps + 1 and len(out.x0_hats) == num_steps
    x = noise_lib.randn((32, 2), torch.Generator().manual_seed(0))
    assert torch.equal(out.trajectory[0], x)
    sched = diffusers_scheduler(num_steps)
    with torch.no_grad():
        for i, t in enumerate(sched.timesteps):
            x = sched.step(model(x, t), t, x).prev_sample
            diff = (x - out.trajectory[i + 1]).abs().max().item()
            worst("flow.generate vs FlowMatchEulerDiscreteScheduler", diff)
            assert diff < TOL, (num_steps, i, diff)
    assert torch.equal(out.x0, out.trajectory[-1])
    # the same run from the module itself, and from an explicit noise
    again = flow.generate(model, None, num_steps, noise=out.trajectory[0])
    torch.testing.assert_close(again.x0, out.x0, rtol=0, atol=TOL)


# ----------------------------------------------------------------------------------------------
# The loss and training
# ----------------------------------------------------------------------------------------------

def test_flow_matching_loss_is_the_velocity_mse():
    model = models.time_mlp(seed=2, prediction_type="flow")
    x0 = moons(16, torch.Generator().manual_seed(0))
    loss = flow.flow_matching_loss(model, x0, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)  # the same draws, in the loss's order: sigma, then eps
    sigma = torch.rand(16, generator=g)
    eps = torch.randn(16, 2, generator=g)
    x_sigma = (1 - sigma[:, None]) * x0 + sigma[:, None] * eps
    expected = ((model(x_sigma, sigma * 1000) - (eps - x0)) ** 2).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=0)
    # a batch that pairs each x0 with its noise (reflow) uses that noise
    paired = flow.flow_matching_loss(model, {"x0": x0, "noise": eps}, torch.Generator().manual_seed(5))
    torch.testing.assert_close(paired, expected, rtol=1e-6, atol=0)


SHORT = dict(steps=300, batch_size=256)


@pytest.fixture(scope="module")
def trained():
    return flow.train(config=training.TrainConfig(**{**flow.TRAIN_CONFIG, **SHORT}))


def test_shortened_training_learns_the_moons(trained):
    losses = trained.losses
    assert len(losses) == SHORT["steps"]
    first, last = sum(losses[:50]) / 50, sum(losses[-50:]) / 50
    assert last < 0.9 * first, (first, last)  # about 1.83 -> 1.45; the flow loss keeps a large floor
    x1 = noise_lib.randn((1000, 2), torch.Generator().manual_seed(1))
    before, after = distance(x1), distance(flow.generate(trained.sampling_model, None, 32, noise=x1).x0)
    assert after < 0.3 * before, (before, after)  # about 0.052 -> 0.007


def test_training_is_deterministic():
    config = training.TrainConfig(**{**flow.TRAIN_CONFIG, "steps": 15, "batch_size": 64})
    a, b = flow.train(config=config), flow.train(config=config)
    assert a.losses == b.losses
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)


def test_reflow_makes_one_step_enough(trained):
    config = training.TrainConfig(**{**flow.REFLOW_CONFIG, "steps": 200, "batch_size": 256})
    straight = flow.reflow(trained.sampling_model, num_pairs=2000, num_steps=16, config=config)
    x1 = noise_lib.randn((1000, 2), torch.Generator().manual_seed(1))
    curved = distance(flow.generate(trained.sampling_model, None, 1, noise=x1).x0)
    one_step = distance(flow.generate(straight.sampling_model, None, 1, noise=x1).x0)
    assert one_step < 0.1 * curved, (curved, one_step)  # about 0.7 (every point lands near the mean) -> 0.009
    assert all(not p.requires_grad for p in trained.sampling_model.parameters())  # the teacher is left alone


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------

def test_generate_refuses_a_diffusion_model():
    with pytest.raises(CourseInputError, match=r"predicts eps.*models\.generate"):
        flow.generate(models.time_mlp(seed=0), (8, 2), 4)
    with pytest.raises(CourseInputError, match="prediction_type='flow'"):
        flow.train(config=training.TrainConfig(steps=1), model=models.time_mlp(seed=0))


@pytest.mark.parametrize("num_steps", [0, -1, 1.5, True])
def test_generate_refuses_bad_step_counts(num_steps):
    with pytest.raises(CourseInputError, match="num_steps"):
        flow.generate(models.time_mlp(seed=0, prediction_type="flow"), (8, 2), num_steps)


def test_generate_refuses_shapes_that_disagree():
    model = models.time_mlp(seed=0, prediction_type="flow")
    with pytest.raises(CourseInputError, match="disagree"):
        flow.generate(model, (8, 2), 2, noise=torch.randn(4, 2))
    with pytest.raises(CourseInputError, match=r"dimension 2"):
        flow.generate(model, (8, 3), 2)
    with pytest.raises(CourseInputError, match="tuple of positive ints"):
        flow.generate(model, 8, 2)
    with pytest.raises(CourseInputError, match="give shape"):
        flow.generate(model, None, 2)


@pytest.mark.parametrize("sigma", [1.5, -0.1, float("nan"), torch.tensor([[0.5], [1.2]])])
def test_sigma_outside_zero_one_is_refused(sigma):
    x0, eps = torch.zeros(2, 2), torch.ones(2, 2)
    with pytest.raises(CourseInputError, match=r"outside \[0, 1\]"):
        flow.interpolate(x0, eps, sigma)
    with pytest.raises(CourseInputError, match=r"outside \[0, 1\]"):
        flow.x0_from_velocity(eps, x0, sigma)


def test_other_bad_input_is_refused():
    x0 = torch.zeros(5, 2)
    with pytest.raises(CourseInputError, match="shapes must match"):
        flow.interpolate(x0, torch.zeros(5, 3), 0.5)
    with pytest.raises(CourseInputError, match=r"\(B, 1, \.\.\.\)"):
        flow.interpolate(x0, x0, torch.full((5,), 0.5))  # a bare (B,) would broadcast along the wrong axis
    with pytest.raises(CourseInputError, match="alpha_bar must lie in"):
        flow.sigma_from_alpha_bar(1.5)
    with pytest.raises(CourseInputError, match="floating-point"):
        flow.velocity_target(torch.zeros(5, 2, dtype=torch.long), x0)


def test_shift_sigma_refuses_what_the_scheduler_cannot_take():
    for bad in (0, -1.0, float("nan"), "3"):
        with pytest.raises(CourseInputError, match="shift"):
            flow.shift_sigma(0.5, bad)
        with pytest.raises(CourseInputError, match="shift"):
            flow.sample_sigmas(4, shift=bad)
    with pytest.raises(CourseInputError, match=r"\[0, 1\]"):
        flow.shift_sigma(torch.tensor([0.2, 1.5]), 3.0)
    assert flow.shift_sigma(0.5, 3.0) == pytest.approx(0.75)


def test_notebook_10s_shift_check_rejects_wrong_answers(capsys):
    # Exercise B's check, with its cases, against answers a learner might write: each must print a failure
    from course_lib import exercises, flow_text2image

    cases = [(torch.linspace(0, 1, 41), s) for s in (flow_text2image.SHIFT, 3.0, 0.5)]
    wrongs = {
        "no shift": lambda sigma, s: sigma,
        "scaled, not a ratio": lambda sigma, s: (s * sigma).clamp(max=1),
        "the inverse shift": lambda sigma, s: sigma / (s - (s - 1) * sigma),
        "r divided by s": lambda sigma, s: (sigma / (1 - sigma).clamp_min(1e-12) / s).nan_to_num(1.0) /
                                           (1 + (sigma / (1 - sigma).clamp_min(1e-12) / s)),
        "a power": lambda sigma, s: sigma ** (1 / s),
        "right at s = 3 only": lambda sigma, s: 3 * sigma / (1 + 2 * sigma),
        "a constant": lambda sigma, s: torch.full_like(sigma, 0.5),
    }
    for name, wrong in wrongs.items():
        exercises.check_function("B", wrong, flow.shift_sigma, cases, atol=1e-6)
        assert capsys.readouterr().out.startswith("❌"), name
    exercises.check_function("B", flow.shift_sigma, flow.shift_sigma, cases, atol=1e-6)
    assert capsys.readouterr().out.startswith("✅")


def test_reflow_pairs_pair_each_noise_with_the_models_own_sample():
    model = models.time_mlp(seed=1, prediction_type="flow")
    x1 = torch.randn(64, 2, generator=torch.Generator().manual_seed(2))
    pairs = flow.reflow_pairs(model, x1, num_steps=4)
    # the oracle: diffusers' FlowMatchEulerDiscreteScheduler from the same noise
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    sched.set_timesteps(4)
    x = x1.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(model(x, t.expand(len(x))), t, x).prev_sample
    torch.testing.assert_close(pairs["x0"], x, atol=1e-5, rtol=0)
    assert torch.equal(pairs["noise"], x1)


def test_path_straightness_is_one_for_lines_and_root_two_for_a_right_angle():
    line = torch.linspace(0, 1, 5)[:, None, None] * torch.tensor([[[1.0, 2.0]], [[-3.0, 0.5]]]).transpose(0, 1)
    assert flow.path_straightness(line) == pytest.approx(1.0)
    corner = torch.tensor([[[0.0, 0.0]], [[1.0, 0.0]], [[1.0, 1.0]]])
    assert flow.path_straightness(corner) == pytest.approx(2 ** 0.5)
    with pytest.raises(CourseInputError, match="K >= 2"):
        flow.path_straightness(corner[:1])
