"""course_lib.samplers against diffusers' DDPMScheduler and DDIMScheduler, over whole trajectories.

Both sides use the SAME alpha_bars table: ours is installed into the diffusers scheduler
(its `alphas_cumprod`, and DDIM's `final_alpha_cumprod`; see conftest.diffusers_scheduler). Why:
ours is built in float64 and rounded once, diffusers accumulates the product in float32, so the
two tables differ by up to ~5e-7. A sample from t ~ 999 divides by sqrt(alpha_bar_999) ~ 0.006,
which amplifies that difference ~150x: conditioning of the problem, not an error in either code.
With one table, what is compared is the step maths alone, and it must agree to 1e-5 at every step.

A deterministic FakeModel (conftest) plays the network: a fixed smooth nonlinear function of (x, t)
whose output is read as eps, x0 or v, so the three prediction types are exercised and the samples
stay O(1) (an absolute 1e-5 is then a relative one).
"""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import SHAPES, diffusers_scheduler, fake_model
from diffusers import DDIMScheduler, DDPMScheduler

from course_lib import posterior, samplers, schedules
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")

T = 1000
TOL = 1e-5
SCHEDULE_NAMES = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}
PREDICTIONS = ["epsilon", "sample", "v_prediction"]
SPACINGS = ["leading", "trailing", "linspace"]
# (data kind, number of inference steps): 30 does not divide 1000, so "trailing" hits DDIM's stride quirk.
CASES = [("image", 20), ("2d", 30)]
NOISE_SOURCES = ["generator", "explicit"]


@functools.lru_cache(maxsize=None)
def alpha_bars(diffusers_name: str) -> torch.Tensor:
    return schedules.NoiseSchedule(SCHEDULE_NAMES[diffusers_name]).alpha_bars


def x_T_for(kind: str, seed: int = 0) -> torch.Tensor:
    return torch.randn(SHAPES[kind], generator=torch.Generator().manual_seed(seed))


def diffusers_loop(sched, model, x_T, *, eta=None, generator=None, noises=None, use_clipped=False):
    """The manual diffusers sampling loop; returns every prev_sample and pred_original_sample."""
    xs, x0s, x = [], [], x_T
    for i, t in enumerate(sched.timesteps):
        kwargs = {"generator": generator}
        if eta is not None:  # DDIM
            kwargs.update(eta=eta, use_clipped_model_output=use_clipped)
            if noises is not None:
                kwargs = {"eta": eta, "use_clipped_model_output": use_clipped, "variance_noise": noises[i]}
        out = sched.step(model(x, int(t)), t, x, **kwargs)
        x = out.prev_sample
        xs.append(x)
        x0s.append(out.pred_original_sample)
    return xs, x0s


def wrap_step(step, *, noise_at=None, t_prev_of=None):
    """A step for samplers.sample that takes its noise from `noise_at[t]` and/or its t_prev from `t_prev_of(t)`."""

    def wrapped(model_output, xt, t, t_prev, generator=None):
        if t_prev_of is not None:
            t_prev = t_prev_of(t)
        if noise_at is not None:
            return step(model_output, xt, t, t_prev, noise=noise_at.get(t))
        return step(model_output, xt, t, t_prev, generator=generator)

    return wrapped


def stride_prev(num_steps: int):
    """diffusers DDIMScheduler's previous timestep: t - T // N, and final_alpha_cumprod below 0."""
    return lambda t: max(int(t) - T // num_steps, -1)


def max_step_diff(ours: list[torch.Tensor], theirs: list[torch.Tensor], upto: int | None = None) -> float:
    pairs = list(zip(ours, theirs))[:upto]
    return max((a - b).abs().max().item() for a, b in pairs) if pairs else 0.0


# ---------------------------------------------------------------------------------------------
# set_timesteps


# diffusers applies steps_offset to "leading" spacing only.
@pytest.mark.parametrize("spacing,offset", [("leading", 0), ("leading", 1), ("trailing", 0), ("linspace", 0)])
@pytest.mark.parametrize("num_steps", [1, 3, 7, 10, 20, 50, 999, 1000])
def test_inference_timesteps_match_diffusers(spacing, num_steps, offset):
    ours = None
    for cls in (DDPMScheduler, DDIMScheduler):
        sched = cls(timestep_spacing=spacing, steps_offset=offset)
        sched.set_timesteps(num_steps)
        if sched.timesteps.max() >= T:
            # diffusers returns a timestep past T - 1 (leading, N = T, offset 1); ours refuses.
            with pytest.raises(samplers.CourseInputError, match="offset=1 pushes the timesteps out of 0..999"):
                samplers.inference_timesteps(T, num_steps, spacing, offset)
            return
        ours = samplers.inference_timesteps(T, num_steps, spacing, offset)
        assert ours.dtype == torch.int64 and len(ours) == num_steps
        assert torch.equal(ours, sched.timesteps), f"{cls.__name__} {spacing} N={num_steps}: {ours} vs {sched.timesteps}"
    assert (ours[:-1] > ours[1:]).all() and ours.min() >= 0 and ours.max() <= T - 1


@pytest.mark.parametrize("num_steps", [61, 103, 201])
def test_trailing_spacing_never_overshoots_quirk(num_steps):
    """diffusers' trailing spacing makes N + 1 timesteps ending at -1 for some N (np.arange rounding);
    ours keeps exactly N, equal to diffusers' first N."""
    sched = DDIMScheduler(timestep_spacing="trailing")
    sched.set_timesteps(num_steps)
    assert len(sched.timesteps) == num_steps + 1 and sched.timesteps[-1] == -1
    ours = samplers.inference_timesteps(T, num_steps, "trailing")
    assert len(ours) == num_steps and ours.min() >= 0
    assert torch.equal(ours, sched.timesteps[:num_steps])


def test_previous_timestep_is_looked_up():
    ts = samplers.inference_timesteps(T, 7, "linspace")
    assert [samplers.previous_timestep(ts, int(t)) for t in ts] == ts[1:].tolist() + [-1]


# ---------------------------------------------------------------------------------------------
# whole trajectories against diffusers


@pytest.mark.parametrize("noise_source", NOISE_SOURCES)
@pytest.mark.parametrize("kind,num_steps", CASES, ids=[f"{k}-{n}" for k, n in CASES])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("clip", [False, True], ids=["noclip", "clip"])
@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("beta_schedule", list(SCHEDULE_NAMES))
def test_ddpm_trajectory_matches_diffusers(beta_schedule, prediction_type, variance_type, clip, spacing, kind,
                                           num_steps, noise_source, worst):
    ab = alpha_bars(beta_schedule)
    model = fake_model(kind, prediction_type, ab)
    x_T = x_T_for(kind)
    sched = diffusers_scheduler("ddpm", ab, beta_schedule=beta_schedule, prediction_type=prediction_type,
                                variance_type=variance_type, clip_sample=clip, timestep_spacing=spacing)
    sched.set_timesteps(num_steps)
    timesteps = samplers.inference_timesteps(T, num_steps, spacing)
    assert torch.equal(timesteps, sched.timesteps)

    seed = 1234
    theirs, their_x0 = diffusers_loop(sched, model, x_T, generator=torch.Generator().manual_seed(seed))
    step = functools.partial(samplers.ddpm_step, alpha_bars=ab, prediction_type=prediction_type,
                             variance_type=variance_type, clip_sample=clip)
    g = torch.Generator().manual_seed(seed)
    if noise_source == "generator":
        ours = samplers.sample(model, x_T, timesteps, step, generator=g, keep_trajectory=True)
        final_z = torch.randn(x_T.shape, generator=g)  # what diffusers draws on a last step with t > 0
    else:
        # The noise diffusers draws, in its order (one draw per step with t > 0), handed to us explicitly.
        noise_at = {int(t): torch.randn(x_T.shape, generator=g) for t in timesteps if t > 0}
        ours = samplers.sample(model, x_T, timesteps, wrap_step(step, noise_at=noise_at), keep_trajectory=True)
        final_z = noise_at.get(int(timesteps[-1]))

    # Every step but the last: the same sample and the same x0_hat.
    diff = max(max_step_diff(ours.trajectory[1:], theirs, -1), max_step_diff(ours.x0_hats, their_x0))
    # The last step: diffusers adds noise whenever t > 0 (trailing spacing ends at t = T/N - 1), with
    # variance clamp(beta_tilde, 1e-20) ~ 0 (fixed_small) or 1 - ab_t (fixed_large); ours adds none.
    t_last = int(timesteps[-1])
    last = theirs[-1]
    if t_last > 0:
        assert torch.equal(ours.x0, ours.x0_hats[-1]), "our last step must land on x0_hat, with no noise"
        if variance_type == "fixed_large":
            jump = (ours.x0 - theirs[-1]).abs().max().item()
            assert jump > 1e-2, f"expected diffusers' extra noise on the final step, got a difference of {jump:.2e}"
            last = theirs[-1] - torch.sqrt(1 - ab[t_last]) * final_z
    worst("DDPMScheduler trajectories: max |ours - diffusers| over every step", diff)
    final = (ours.x0 - last).abs().max().item()
    name = "extra noise removed" if t_last > 0 and variance_type == "fixed_large" else "no correction"
    worst(f"DDPMScheduler trajectories: final step, {name}", final)
    diff = max(diff, final)
    assert diff <= TOL, f"max |ours - diffusers| over the trajectory = {diff:.2e} > {TOL}"


# eta = 0 draws no noise, so one noise source covers it; eta = 1 takes both.
@pytest.mark.parametrize("eta,noise_source", [(0.0, "generator"), (1.0, "generator"), (1.0, "explicit")])
@pytest.mark.parametrize("kind,num_steps", CASES, ids=[f"{k}-{n}" for k, n in CASES])
@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("clip", [False, True], ids=["noclip", "clip"])
@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("beta_schedule", list(SCHEDULE_NAMES))
def test_ddim_trajectory_matches_diffusers(beta_schedule, prediction_type, eta, clip, spacing, kind, num_steps,
                                           noise_source, worst):
    """Where diffusers' stride t_prev disagrees with its timesteps array (linspace; trailing with N not
    dividing T) our ddim_step is fed the t_prev diffusers actually uses, so the step maths is compared."""
    ab = alpha_bars(beta_schedule)
    model = fake_model(kind, prediction_type, ab)
    x_T = x_T_for(kind)
    sched = diffusers_scheduler("ddim", ab, beta_schedule=beta_schedule, prediction_type=prediction_type,
                                clip_sample=clip, timestep_spacing=spacing)
    sched.set_timesteps(num_steps)
    timesteps = samplers.inference_timesteps(T, num_steps, spacing)
    assert torch.equal(timesteps, sched.timesteps)
    array_prev = timesteps[1:].tolist() + [-1]
    quirk = [stride_prev(num_steps)(t) for t in timesteps.tolist()] != array_prev
    assert quirk == (spacing == "linspace" or (spacing == "trailing" and T % num_steps != 0))
    t_prev_of = stride_prev(num_steps) if quirk else None

    step = functools.partial(samplers.ddim_step, alpha_bars=ab, eta=eta, prediction_type=prediction_type,
                             clip_sample=clip)
    seed = 99
    if noise_source == "generator":
        theirs, their_x0 = diffusers_loop(sched, model, x_T, eta=eta, generator=torch.Generator().manual_seed(seed))
        ours = samplers.sample(model, x_T, timesteps, wrap_step(step, t_prev_of=t_prev_of) if quirk else step,
                               generator=torch.Generator().manual_seed(seed), keep_trajectory=True)
    else:
        g = torch.Generator().manual_seed(seed)
        noises = [torch.randn(x_T.shape, generator=g) for _ in timesteps]
        theirs, their_x0 = diffusers_loop(sched, model, x_T, eta=eta, noises=noises)
        noise_at = dict(zip(timesteps.tolist(), noises))
        ours = samplers.sample(model, x_T, timesteps, wrap_step(step, noise_at=noise_at, t_prev_of=t_prev_of),
                               keep_trajectory=True)
    diff = max(max_step_diff(ours.trajectory[1:], theirs), max_step_diff(ours.x0_hats, their_x0))
    assert len(ours.trajectory) == num_steps + 1 == len(theirs) + 1
    worst("DDIMScheduler trajectories: max |ours - diffusers| over every step", diff)
    assert diff <= TOL, f"max |ours - diffusers| over the trajectory = {diff:.2e} > {TOL}"


FULL_RUNS = [("linear", "epsilon", "fixed_small", True, "image"),
             ("squaredcos_cap_v2", "v_prediction", "fixed_large", False, "2d")]


@pytest.mark.parametrize("beta_schedule,prediction_type,variance_type,clip,kind", FULL_RUNS)
def test_full_1000_step_ddpm_matches_diffusers(beta_schedule, prediction_type, variance_type, clip, kind,
                                               worst):
    ab = alpha_bars(beta_schedule)
    model = fake_model(kind, prediction_type, ab)
    x_T = x_T_for(kind, seed=3)
    sched = diffusers_scheduler("ddpm", ab, beta_schedule=beta_schedule, prediction_type=prediction_type,
                                variance_type=variance_type, clip_sample=clip)
    sched.set_timesteps(T)
    timesteps = samplers.inference_timesteps(T, T)
    assert timesteps.tolist() == list(range(T - 1, -1, -1))
    theirs, their_x0 = diffusers_loop(sched, model, x_T, generator=torch.Generator().manual_seed(5))
    step = functools.partial(samplers.ddpm_step, alpha_bars=ab, prediction_type=prediction_type,
                             variance_type=variance_type, clip_sample=clip)
    ours = samplers.sample(model, x_T, timesteps, step, generator=torch.Generator().manual_seed(5),
                           keep_trajectory=True)
    diff = max(max_step_diff(ours.trajectory[1:], theirs), max_step_diff(ours.x0_hats, their_x0))
    worst("DDPMScheduler trajectories: max |ours - diffusers| over every step", diff)
    worst("DDPMScheduler full 1000-step runs: max |ours - diffusers|", diff)
    assert diff <= TOL, f"1000-step DDPM: max |ours - diffusers| = {diff:.2e} > {TOL}"


@pytest.mark.parametrize("set_alpha_to_one", [True, False])
@pytest.mark.parametrize("use_clipped", [False, True])
@pytest.mark.parametrize("prediction_type", PREDICTIONS)
def test_ddim_final_alpha_and_clipped_model_output_match_diffusers(set_alpha_to_one, use_clipped, prediction_type,
                                                                   worst):
    ab = alpha_bars("scaled_linear")
    model, x_T = fake_model("image", prediction_type, ab), x_T_for("image", seed=8)
    sched = diffusers_scheduler("ddim", ab, beta_schedule="scaled_linear", prediction_type=prediction_type,
                                clip_sample=True, set_alpha_to_one=set_alpha_to_one, steps_offset=1)
    sched.set_timesteps(25)
    timesteps = samplers.inference_timesteps(T, 25, "leading", offset=1)
    theirs, their_x0 = diffusers_loop(sched, model, x_T, eta=0.5, generator=torch.Generator().manual_seed(2),
                                      use_clipped=use_clipped)
    step = functools.partial(samplers.ddim_step, alpha_bars=ab, eta=0.5, prediction_type=prediction_type,
                             clip_sample=True, use_clipped_model_output=use_clipped,
                             final_alpha_bar=1.0 if set_alpha_to_one else float(ab[0]))
    ours = samplers.sample(model, x_T, timesteps, step, generator=torch.Generator().manual_seed(2),
                           keep_trajectory=True)
    diff = max(max_step_diff(ours.trajectory[1:], theirs), max_step_diff(ours.x0_hats, their_x0))
    worst("DDIMScheduler trajectories: max |ours - diffusers| over every step", diff)
    assert diff <= TOL, f"max |ours - diffusers| = {diff:.2e} > {TOL}"


@pytest.mark.parametrize("beta_schedule", list(SCHEDULE_NAMES))
def test_native_tables_differ_by_conditioning_only(beta_schedule, worst):
    """Without installing our table, DDIM-50 from t = 999 differs by a small multiple of the table
    difference (<= 5e-7): sampling amplifies it, by up to 1/sqrt(ab_999) at the first step. This is
    why the trajectory tests install one table in both."""
    ab = alpha_bars(beta_schedule)
    config = schedules.NoiseSchedule(SCHEDULE_NAMES[beta_schedule]).diffusers_config()
    sched = DDIMScheduler(**config, prediction_type="epsilon", clip_sample=False, timestep_spacing="trailing")
    sched.set_timesteps(50)
    table_diff = (sched.alphas_cumprod - ab).abs().max().item()
    assert 0 < table_diff <= 5e-7
    model, x_T = fake_model("image", "epsilon", ab), x_T_for("image")
    theirs, _ = diffusers_loop(sched, model, x_T, eta=0.0)
    ours = samplers.sample(model, x_T, samplers.inference_timesteps(T, 50, "trailing"),
                           functools.partial(samplers.ddim_step, alpha_bars=ab), keep_trajectory=True)
    diff = max_step_diff(ours.trajectory[1:], theirs)
    worst("DDIMScheduler, native tables: max |ours - diffusers| / table difference", diff / table_diff)
    assert diff <= 150 * table_diff, f"{diff:.2e} is more than 150x the table difference {table_diff:.2e}"


# ---------------------------------------------------------------------------------------------
# diffusers' quirks, documented as tests


@pytest.mark.parametrize("spacing,num_steps,disagrees", [
    ("linspace", 7, True), ("linspace", 20, True), ("linspace", 50, True),
    ("trailing", 7, True), ("trailing", 30, True), ("trailing", 10, False), ("trailing", 50, False),
    ("leading", 7, False), ("leading", 30, False), ("leading", 50, False),
])
def test_ddim_stride_prev_timestep_quirk(spacing, num_steps, disagrees):
    """DDIMScheduler.step computes prev_t = t - T // N, which is not the next element of its own
    timesteps for 'linspace' and for 'trailing' with N not dividing T; our loop uses the array."""
    sched = DDIMScheduler(timestep_spacing=spacing)
    sched.set_timesteps(num_steps)
    ts = sched.timesteps.tolist()
    array_prev = ts[1:] + [-1]
    stride = [max(t - T // num_steps, -1) for t in ts]
    assert (stride != array_prev) == disagrees, f"{spacing} N={num_steps}: stride {stride} vs array {array_prev}"

    seen = []

    def recording_step(model_output, xt, t, t_prev, generator=None):
        seen.append(t_prev)
        return samplers.ddim_step(model_output, xt, t, t_prev, schedules.NoiseSchedule().alpha_bars)

    samplers.sample(lambda x, t: torch.zeros_like(x), torch.ones(2, 2), samplers.inference_timesteps(T, num_steps,
                                                                                                      spacing),
                    recording_step)
    assert seen == array_prev


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("spacing,offset", [("trailing", 0), ("leading", 1)])
def test_ddpm_final_step_noise_quirk(variance_type, spacing, offset):
    """DDPMScheduler adds noise whenever t > 0, so when the last timestep is above 0 (trailing spacing,
    or leading with steps_offset=1) its final step to clean data is noisy; ours adds none. With
    fixed_large the final diffusers sample differs from ours by sqrt(1 - ab_t) * z; the steps before agree."""
    ab = alpha_bars("linear")
    model, x_T = fake_model("2d", "epsilon", ab), x_T_for("2d", seed=4)
    sched = diffusers_scheduler("ddpm", ab, prediction_type="epsilon", variance_type=variance_type,
                                clip_sample=False, timestep_spacing=spacing, steps_offset=offset)
    sched.set_timesteps(10)
    timesteps = samplers.inference_timesteps(T, 10, spacing, offset)
    t_last = int(timesteps[-1])
    assert t_last > 0
    theirs, _ = diffusers_loop(sched, model, x_T, generator=torch.Generator().manual_seed(6))
    g = torch.Generator().manual_seed(6)
    step = functools.partial(samplers.ddpm_step, alpha_bars=ab, variance_type=variance_type)
    ours = samplers.sample(model, x_T, timesteps, step, generator=g, keep_trajectory=True)
    z = torch.randn(x_T.shape, generator=g)  # the draw diffusers makes on its last step
    assert max_step_diff(ours.trajectory[1:], theirs, -1) <= TOL
    gap = theirs[-1] - ours.x0
    if variance_type == "fixed_large":
        expected = torch.sqrt(1 - ab[t_last]) * z
        assert gap.abs().max() > 0.5 * expected.abs().max() > 0
        assert (gap - expected).abs().max() <= TOL, "diffusers' last step should add sqrt(1 - ab_t) * z"
    else:  # variance clamp(0, min=1e-20): std 1e-10
        assert gap.abs().max() <= TOL


# ---------------------------------------------------------------------------------------------
# the step maths against the posterior

STEP_PAIRS = [(999, 998), (500, 499), (500, 300), (37, 0), (20, -1), (0, -1)]


def _batch(seed=0, shape=(5, 3)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g), torch.randn(shape, generator=g)


@pytest.mark.parametrize("t,t_prev", STEP_PAIRS)
@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_ddpm_step_mean_is_posterior_mean_and_variance(t, t_prev, prediction_type, variance_type):
    ab = alpha_bars("linear").double()
    xt, model_output, z = (v.double() for v in _batch())
    step = functools.partial(samplers.ddpm_step, model_output, xt, t, t_prev, ab, prediction_type=prediction_type,
                             variance_type=variance_type)
    mean_step = step(noise=torch.zeros_like(xt))
    x0_hat, _ = posterior.predict_x0_eps(model_output, xt, schedules.gather(ab, torch.tensor(t), xt), prediction_type)
    torch.testing.assert_close(mean_step.x0_hat, x0_hat)
    post_mean, post_var = posterior.q_posterior(x0_hat, xt, t, ab, t_prev=t_prev)
    torch.testing.assert_close(mean_step.x_prev, post_mean)
    noisy = step(noise=z).x_prev
    ab_prev = 1.0 if t_prev < 0 else ab[t_prev]
    if t_prev < 0:
        torch.testing.assert_close(noisy, post_mean, atol=0, rtol=0)  # no noise on the last step
    else:
        sigma2 = post_var if variance_type == "fixed_small" else (1 - ab[t] / ab_prev).expand_as(xt)
        torch.testing.assert_close((noisy - post_mean) / z, sigma2.sqrt())
    if t_prev == t - 1 and t_prev >= 0 and variance_type == "fixed_large":
        # One training step: sigma^2 = beta_t of the schedule (DDPM's sigma_t^2 = beta_t).
        beta = schedules.NoiseSchedule("linear").betas.double()[t]
        torch.testing.assert_close(sigma2[0, 0], beta, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("t,t_prev", STEP_PAIRS)
@pytest.mark.parametrize("prediction_type", PREDICTIONS)
def test_ddim_step_eta_one_variance_is_beta_tilde(t, t_prev, prediction_type):
    ab = alpha_bars("squaredcos_cap_v2").double()
    xt, model_output, z = (v.double() for v in _batch(1))
    step = functools.partial(samplers.ddim_step, model_output, xt, t, t_prev, ab, prediction_type=prediction_type)
    x0_hat, eps_hat = posterior.predict_x0_eps(model_output, xt, schedules.gather(ab, torch.tensor(t), xt),
                                               prediction_type)
    _, beta_tilde = posterior.q_posterior(x0_hat, xt, t, ab, t_prev=t_prev)
    mean = step(eta=1.0, noise=torch.zeros_like(xt)).x_prev
    sigma = (step(eta=1.0, noise=z).x_prev - mean) / z
    torch.testing.assert_close(sigma**2, beta_tilde)
    # eta = 1 with an eps_hat consistent with x0_hat: the DDIM mean is DDPM's posterior mean.
    ddpm_mean = samplers.ddpm_step(model_output, xt, t, t_prev, ab, prediction_type=prediction_type,
                                   noise=torch.zeros_like(xt)).x_prev
    torch.testing.assert_close(mean, ddpm_mean)
    # eta = 0: x_prev = q_sample(x0_hat, t_prev, noise=eps_hat), and no random number is drawn.
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    det = step(eta=0.0, generator=g).x_prev
    assert torch.equal(g.get_state(), state)
    expected = x0_hat if t_prev < 0 else schedules.q_sample(x0_hat, t_prev, ab, noise=eps_hat)
    torch.testing.assert_close(det, expected)


def test_last_ddpm_step_draws_no_noise():
    ab = alpha_bars("linear")
    xt, model_output, _ = _batch()
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    samplers.ddpm_step(model_output, xt, 3, -1, ab, variance_type="fixed_large", generator=g)
    assert torch.equal(g.get_state(), state)
    samplers.ddpm_step(model_output, xt, 3, 2, ab, generator=g)
    assert not torch.equal(g.get_state(), state)


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_ddpm_step_per_sample_timesteps_equal_row_by_row(variance_type):
    """One (B,) batch of timesteps, some landing on clean data: each row as if stepped alone."""
    ab = alpha_bars("linear")
    xt, model_output, z = _batch(shape=(4, 2))
    t, t_prev = torch.tensor([999, 500, 20, 0]), torch.tensor([900, 250, -1, -1])
    batched = samplers.ddpm_step(model_output, xt, t, t_prev, ab, variance_type=variance_type, noise=z)
    for i in range(4):
        row = samplers.ddpm_step(model_output[i:i + 1], xt[i:i + 1], int(t[i]), int(t_prev[i]), ab,
                                 variance_type=variance_type, noise=z[i:i + 1])
        torch.testing.assert_close(batched.x_prev[i:i + 1], row.x_prev, atol=0, rtol=0)


def test_ddim_step_per_sample_timesteps_equal_row_by_row():
    ab = alpha_bars("linear")
    xt, model_output, z = _batch(shape=(4, 2))
    t, t_prev = torch.tensor([999, 500, 20, 0]), torch.tensor([900, 250, -1, -1])
    batched = samplers.ddim_step(model_output, xt, t, t_prev, ab, eta=0.7, noise=z)
    for i in range(4):
        row = samplers.ddim_step(model_output[i:i + 1], xt[i:i + 1], int(t[i]), int(t_prev[i]), ab, eta=0.7,
                                 noise=z[i:i + 1])
        torch.testing.assert_close(batched.x_prev[i:i + 1], row.x_prev, atol=0, rtol=0)


def test_sample_loop_bookkeeping():
    ab = alpha_bars("linear")
    ts = samplers.inference_timesteps(T, 5, "trailing")
    calls = []
    out = samplers.sample(lambda x, t: 0.1 * x, torch.ones(3, 2), ts,
                          functools.partial(samplers.ddim_step, alpha_bars=ab),
                          keep_trajectory=True, callback=lambda i, t, res: calls.append((i, t)))
    assert calls == list(enumerate(ts.tolist()))
    assert len(out.trajectory) == 6 and len(out.x0_hats) == 5
    assert torch.equal(out.x0, out.trajectory[-1]) and torch.equal(out.trajectory[0], torch.ones(3, 2))
    assert samplers.sample(lambda x, t: 0.1 * x, torch.ones(3, 2), ts,
                           functools.partial(samplers.ddim_step, alpha_bars=ab)).trajectory == []


# ----------------------------------------------------------------------------------------------
# The ODE solvers (nb 03b) against diffusers' Euler, Heun and DPM-Solver++ schedulers
# ----------------------------------------------------------------------------------------------

def _solver_scheduler(name: str, ab: torch.Tensor, prediction_type: str, spacing: str):
    """The diffusers scheduler a course solver follows, with our alpha_bars table installed before set_timesteps."""
    from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler

    cls, extra = {"euler": (EulerDiscreteScheduler, {}), "heun": (HeunDiscreteScheduler, {}),
                  "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2})}[name]
    sched = cls(num_train_timesteps=T, beta_schedule="linear", prediction_type=prediction_type, timestep_spacing=spacing,
                steps_offset=1 if spacing == "leading" else 0, **extra)
    sched.alphas_cumprod = ab.clone()
    if hasattr(sched, "lambda_t"):  # DPM-Solver keeps alpha_t, sigma_t and lambda_t tables too
        sched.alpha_t, sched.sigma_t = torch.sqrt(ab), torch.sqrt(1 - ab)
        sched.lambda_t = torch.log(sched.alpha_t) - torch.log(sched.sigma_t)
    return sched


def _diffusers_solver_loop(sched, model, x_T, num_steps):
    """diffusers' loop: x_T scaled into the scheduler's variables, scale_model_input, step; returns x_0 and the model calls."""
    sched.set_timesteps(num_steps)
    # Euler/Heun work on x_bar = x_t sqrt(sigma^2 + 1); DPM-Solver on x_t. (Their init_noise_sigma is sigma_max for
    # "trailing", a factor sigma/sqrt(sigma^2 + 1) below what x_T ~ N(0, I) means; we compare from the same x_T.)
    scale = 1.0 if type(sched).__name__.startswith("DPM") else float((sched.sigmas.max() ** 2 + 1) ** 0.5)
    x, calls = x_T * scale, 0
    for t in sched.timesteps:
        x = sched.step(model(sched.scale_model_input(x, t), int(t)), t, x).prev_sample
        calls += 1
    return x, calls


class _Counting:
    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.model(x, t)


@pytest.mark.parametrize("name", ["euler", "heun", "dpmpp_2m"])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("prediction_type", PREDICTIONS)
def test_ode_solvers_equal_diffusers(name, spacing, prediction_type, worst):
    ab = alpha_bars("linear")
    for kind, num_steps in (("image", 4), ("image", 25), ("2d", 10)):
        model = fake_model(kind, prediction_type, ab)
        x_T = x_T_for(kind)
        theirs, their_calls = _diffusers_solver_loop(_solver_scheduler(name, ab, prediction_type, spacing), model, x_T,
                                                     num_steps)
        solver = samplers.get_sampler(name, prediction_type=prediction_type)
        timesteps = solver.timesteps(T, num_steps, spacing, offset=1 if spacing == "leading" else 0)
        counted = _Counting(model)
        ours = samplers.sample(counted, x_T, timesteps, solver, alpha_bars=ab).x0
        err = float((ours - theirs).abs().max()) / max(1.0, float(theirs.abs().max()))
        worst(f"solvers: {name} vs diffusers (relative)", err)
        assert err <= TOL, (kind, num_steps, err)
        assert counted.calls == their_calls == solver.evaluations(num_steps)


def test_ddim_is_euler_on_the_probability_flow_ode(worst):
    """DDIM (eta = 0, landing on alpha_bar = 1) and Euler in sigma = sqrt((1 - ab)/ab): one method, two formulas."""
    ab = alpha_bars("scaled_linear")
    for prediction_type in PREDICTIONS:
        model = fake_model("image", prediction_type, ab)
        timesteps = samplers.inference_timesteps(T, 12, "trailing")
        ddim = samplers.sample(model, x_T_for("image"), timesteps, samplers.DDIM(prediction_type=prediction_type),
                               alpha_bars=ab, keep_trajectory=True)
        euler = samplers.sample(model, x_T_for("image"), timesteps, samplers.Euler(prediction_type=prediction_type),
                                alpha_bars=ab, keep_trajectory=True)
        err = max(float((a - b).abs().max()) for a, b in zip(ddim.trajectory, euler.trajectory))
        worst("solvers: DDIM vs Euler, every step", err)
        assert err <= TOL


def test_multistep_history_is_cleared_between_runs():
    ab = alpha_bars("linear")
    model = fake_model("image", "epsilon", ab)
    solver = samplers.get_sampler("dpmpp_2m")
    timesteps = solver.timesteps(T, 8)
    first = samplers.sample(model, x_T_for("image", 1), timesteps, solver, alpha_bars=ab).x0
    samplers.sample(model, x_T_for("image", 2), timesteps, solver, alpha_bars=ab)
    again = samplers.sample(model, x_T_for("image", 1), timesteps, solver, alpha_bars=ab).x0
    assert torch.equal(first, again)


def test_dpm_solver_leading_timesteps_are_its_own():
    """DPM-Solver's 'leading' divides into N + 1 (not DDIM's N); its 'trailing' is everyone's."""
    for n in (5, 20, 25):
        sched = _solver_scheduler("dpmpp_2m", alpha_bars("linear"), "epsilon", "leading")
        sched.set_timesteps(n)
        assert samplers.DPMSolverPP2M().timesteps(T, n, "leading", offset=1).tolist() == sched.timesteps.tolist()
    assert samplers.DPMSolverPP2M().timesteps(T, 25, "leading", 1).tolist() != \
        samplers.DDIM().timesteps(T, 25, "leading", 1).tolist()


def test_samplers_by_name_and_bad_input():
    assert isinstance(samplers.get_sampler("Heun"), samplers.Heun)
    built = samplers.DDIM(eta=0.5)
    assert samplers.get_sampler(built) is built
    with pytest.raises(CourseInputError, match="unknown sampler 'lms'.*ddpm, ddim, euler, heun, dpmpp_2m"):
        samplers.get_sampler("lms")
    with pytest.raises(CourseInputError, match="already built"):
        samplers.get_sampler(built, eta=1.0)
    with pytest.raises(CourseInputError, match="euler takes the options"):
        samplers.get_sampler("euler", eta=1.0)
    with pytest.raises(CourseInputError, match="dpmpp_2m with 1 step never takes its second-order step"):
        samplers.get_sampler("dpmpp_2m").timesteps(T, 1)
    with pytest.raises(CourseInputError, match="at least 3 steps"):
        samplers.sample(lambda x, t: x, x_T_for("2d"), [999, 499], "dpmpp_2m", alpha_bars=alpha_bars("linear"))
    heun = samplers.get_sampler("heun")
    assert heun.evaluations(10) == 19 and heun.steps_for(19) == 10
    with pytest.raises(CourseInputError, match="always odd. 8 evaluations cannot be spent exactly; use 7 or 9"):
        heun.steps_for(8)
    with pytest.raises(CourseInputError, match="needs alpha_bars"):
        samplers.sample(lambda x, t: x, x_T_for("2d"), [999, 499], "euler")
    with pytest.raises(CourseInputError, match="call Euler.begin"):
        samplers.Euler().step(lambda x, t: x, x_T_for("2d"), 0)


# ----------------------------------------------------------------------------------------------
# What the samplers accept they honour: fractional 'linspace' timesteps, final_alpha_bar, float64
# ----------------------------------------------------------------------------------------------

class _OutsideNet(torch.nn.Module):
    """A small fixed random network built here, not by the course: eps from (x, t), t read as a float."""

    def __init__(self, channels: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.nn.Parameter(torch.randn(channels + 2, 16, generator=g) / 2)
        self.w2 = torch.nn.Parameter(torch.randn(16, channels, generator=g) / 4)

    def forward(self, x, t):
        t = torch.as_tensor(t, dtype=x.dtype).reshape(-1)[:1]
        h = x.movedim(1, -1)
        u = (t / 1000).expand(*h.shape[:-1], 1)
        feats = torch.cat([h, torch.sin(3 * u), torch.cos(3 * u)], -1)
        return (torch.tanh(feats @ self.w1.to(x.dtype)) @ self.w2.to(x.dtype)).movedim(-1, 1)


def _diffusers_run(name, ab, model, x_T, num_steps, spacing, prediction_type="epsilon", **config):
    """x_0 of diffusers' own loop, the model called at the timestep the scheduler passes (fractional or not)."""
    sched = _solver_scheduler(name, ab, prediction_type, spacing)
    sched.register_to_config(**config)
    sched.set_timesteps(num_steps)
    scale = 1.0 if name == "dpmpp_2m" else float((sched.sigmas.max() ** 2 + 1) ** 0.5)
    x = x_T * scale
    for t in sched.timesteps:
        x = sched.step(model(sched.scale_model_input(x, t), t), t, x).prev_sample
    return x, sched


@pytest.mark.parametrize("name", ["euler", "heun"])
@pytest.mark.parametrize("num_steps", [7, 25])
def test_euler_and_heun_linspace_keep_diffusers_fractional_timesteps(name, num_steps, worst):
    """EulerDiscreteScheduler and HeunDiscreteScheduler keep 'linspace' timesteps fractional (832.5) and interpolate
    sigma; ours visits the same timesteps, calls the model there, and lands on the same x_0."""
    ab = alpha_bars("linear")
    model, x_T = _OutsideNet(), x_T_for("image")
    with torch.no_grad():
        theirs, sched = _diffusers_run(name, ab, model, x_T, num_steps, "linspace")
        solver = samplers.get_sampler(name)
        timesteps = solver.timesteps(T, num_steps, "linspace")
        assert timesteps.dtype == torch.float32 and torch.equal(timesteps, sched.timesteps.unique_consecutive())
        assert timesteps[1] != timesteps[1].round()  # 832.5 at 7 steps: fractional, not rounded
        seen = []

        def recording(x, t):
            seen.append(t)
            return model(x, t)

        ours = samplers.sample(recording, x_T, timesteps, solver, alpha_bars=ab).x0
    assert seen == [float(t) if float(t) != int(t) else int(t) for t in sched.timesteps]
    err = float((ours - theirs).abs().max()) / max(1.0, float(theirs.abs().max()))
    worst(f"solvers: {name} 'linspace' (fractional t) vs diffusers (relative)", err)
    assert err <= TOL


def test_integer_samplers_refuse_fractional_timesteps():
    ab = alpha_bars("linear")
    fractional = samplers.Euler().timesteps(T, 7, "linspace")
    for name in ("ddim", "ddpm", "dpmpp_2m"):
        with pytest.raises(CourseInputError, match=f"timesteps must be integers for {name}.*832.5"):
            samplers.sample(lambda x, t: x, x_T_for("2d"), fractional, name, alpha_bars=ab)
    with pytest.raises(CourseInputError, match="timesteps must be integers for this step function"):
        samplers.sample(lambda x, t: x, x_T_for("2d"), fractional, functools.partial(samplers.ddim_step, alpha_bars=ab))


@pytest.mark.parametrize("name", ["euler", "dpmpp_2m"])
@pytest.mark.parametrize("num_steps", [5, 20])
def test_final_alpha_bar_is_diffusers_final_sigmas_type_sigma_min(name, num_steps, worst):
    """final_alpha_bar = alpha_bars[0] ends Euler and DPM-Solver++ on sigma_min, as final_sigmas_type="sigma_min"
    (DPM-Solver++'s last step is first order below 15 steps, second order from 15: diffusers' lower_order_final).
    The network's output is read as x0 here, so the samples stay O(1) and the two endings differ visibly."""
    ab = alpha_bars("linear")
    model, x_T = _OutsideNet(), x_T_for("image", seed=5)
    with torch.no_grad():
        theirs, sched = _diffusers_run(name, ab, model, x_T, num_steps, "trailing", "sample",
                                       final_sigmas_type="sigma_min")
        solver = samplers.get_sampler(name, prediction_type="sample")
        ours = samplers.sample(model, x_T, solver.timesteps(T, num_steps), solver, alpha_bars=ab,
                               final_alpha_bar=float(ab[0])).x0
        to_zero = samplers.sample(model, x_T, solver.timesteps(T, num_steps), solver, alpha_bars=ab).x0
    if name == "euler":  # diffusers' Euler returns x_bar = x_t sqrt(sigma^2 + 1)
        ours, to_zero = (v * float((sched.sigmas[-1] ** 2 + 1) ** 0.5) for v in (ours, to_zero))
    err = float((ours - theirs).abs().max()) / max(1.0, float(theirs.abs().max()))
    worst(f"solvers: {name} final_sigmas_type='sigma_min' vs diffusers (relative)", err)
    assert err <= TOL
    assert float((to_zero - theirs).abs().max()) / max(1.0, float(theirs.abs().max())) > 100 * TOL


def test_final_alpha_bar_where_it_cannot_apply_is_refused():
    ab = alpha_bars("linear")
    for name in ("ddpm", "heun"):
        with pytest.raises(CourseInputError, match=f"{name} always lands on clean data.*final_alpha_bar=0.9999"):
            samplers.sample(lambda x, t: x, x_T_for("2d"), [999, 499], name, alpha_bars=ab, final_alpha_bar=float(ab[0]))
    with pytest.raises(CourseInputError, match="a step function takes its own"):
        samplers.sample(lambda x, t: x, x_T_for("2d"), [999, 499], functools.partial(samplers.ddim_step, alpha_bars=ab),
                        final_alpha_bar=float(ab[0]))
    # DDIM lands exactly where final_alpha_bar says: with eps = 0, x_0 = sqrt(final_alpha_bar) * x0_hat
    x = torch.ones(2, 2)
    out = samplers.sample(lambda x, t: torch.zeros_like(x), x, [999], "ddim", alpha_bars=ab, final_alpha_bar=0.25)
    torch.testing.assert_close(out.x0, 0.5 * x / ab[999].sqrt())


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
def test_ode_solvers_convert_in_the_dtype_of_x(prediction_type, worst):
    """In float64 (table and x), Euler and DDIM (eta = 0) are one method to float64 round-off: the solvers
    convert eps or v to x0 in x's dtype, as DDIM does (before: through the float32 table, ~1e-8 apart)."""
    ab = alpha_bars("linear").double()
    model, x_T = _OutsideNet(), x_T_for("image").double()
    with torch.no_grad():
        timesteps = samplers.inference_timesteps(T, 12, "trailing")
        ddim = samplers.sample(model, x_T, timesteps, samplers.DDIM(prediction_type=prediction_type), alpha_bars=ab).x0
        euler = samplers.sample(model, x_T, timesteps, samplers.Euler(prediction_type=prediction_type), alpha_bars=ab).x0
    err = float((ddim - euler).abs().max()) / max(1.0, float(ddim.abs().max()))
    worst("solvers: float64 DDIM vs Euler (relative)", err)
    assert ddim.dtype == euler.dtype == torch.float64 and err <= 1e-12


def test_unknown_sampler_options_are_clear_errors():
    with pytest.raises(CourseInputError, match="euler takes the options.*use_karras_sigmas.*Karras sigmas"):
        samplers.Euler(use_karras_sigmas=True)
    with pytest.raises(CourseInputError, match=r"ddim takes the options \['eta'"):
        samplers.DDIM(variance_type="fixed_small")
