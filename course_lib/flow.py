"""Flow matching (rectified flow) on the course's 2D data: straight paths from data to noise.   [notebook 03b]

Diffusion (notebooks 01-03) noises data along x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps. Flow
matching (Lipman et al. 2022; rectified flow, Liu et al. 2022), the training of Stable Diffusion 3
and FLUX, takes the straight line between a data point and a noise draw instead:

    x_sigma = (1 - sigma) x0 + sigma eps,    sigma in [0, 1], sigma = 1 is pure noise,

whose velocity along the line is the same at every sigma:

    v = dx_sigma / dsigma = eps - x0.

A network v_theta(x_sigma, sigma) trained by plain regression on v (flow_matching_loss) learns the
average velocity through each point, E[eps - x0 | x_sigma], and integrating dx/dsigma = v_theta from
sigma = 1 (noise) down to 0 carries N(0, I) to the data. generate does that with Euler's method on
exactly the sigmas and timesteps of diffusers' FlowMatchEulerDiscreteScheduler (shift=1.0).

The straight path is a diffusion in other units: x_t / (sqrt(ab) + sqrt(1 - ab)) lies on it at
sigma = sqrt(1 - ab) / (sqrt(ab) + sqrt(1 - ab)), with the same signal-to-noise ratio
(sigma_from_alpha_bar, x_sigma_from_xt), and the flow velocity is a fixed mix of diffusion's
v-prediction and x_t (velocity_from_v_diffusion).

The learned paths still bend (independent noise and data pairs cross, and the model averages their
directions), so few Euler steps miss the data. reflow retrains on the model's own (noise, sample)
pairs, whose straight lines do not cross: then one or two steps suffice.

Legend, code name -> symbol:
    sigma          the flow's noise level in [0, 1] (SD3's t, diffusers' FlowMatchEulerDiscreteScheduler's sigma).
                   Not Karras' sigma = sqrt((1 - ab) / ab) of samplers.karras_sigma, nor the std of the
                   noise a DDPM/DDIM step adds: three quantities share the letter.
    x_sigma        a point on the straight path; x at sigma = 1 is x1, the noise the sampler starts from
    v, v_hat       the velocity eps - x0, and the model's prediction of it (config.prediction_type="flow")
    timestep       what the model is called with: sigma * num_train_timesteps (1000), a float, as in SD3
    alpha_bar, xt  diffusion's ab_t and x_t (notebooks 01-02)
    v_diffusion    diffusion's v-prediction sqrt(ab) eps - sqrt(1 - ab) x0 (posterior.v_from_x0_eps): another v

Example (about 18 s on one CPU thread; set torch.set_num_threads(1) as the notebooks do: on a shared
2-core machine a second thread mostly waits, and the same run took 6-11 minutes with two):

    >>> import torch
    >>> from course_lib import flow
    >>> state = flow.train()                                   # two moons, 2,000 steps
    >>> x0 = flow.generate(state.sampling_model, (2000, 2), num_steps=8,
    ...                    generator=torch.Generator().manual_seed(0)).x0           # (2000, 2)
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import data as course_data
from course_lib import models, samplers, training
from course_lib import noise as noise_lib
from course_lib.validation import (
    CourseInputError,
    check_alpha_bar_t,
    check_choice,
    check_device,
    check_finite,
    check_float_tensor,
    check_number,
    check_positive_int,
    check_same_shape,
)

NUM_TRAIN_TIMESTEPS = 1000  # the model sees timestep = sigma * 1000, as SD3 and diffusers' flow scheduler

# What the diffusion prediction types are, for the message that refuses them.
_DIFFUSION_OUTPUTS = {"epsilon": "eps (the noise)", "sample": "x0 (the clean data)",
                      "v_prediction": "diffusion's v = sqrt(ab) eps - sqrt(1 - ab) x0"}


def _sigma_like(sigma, like: torch.Tensor, name: str = "sigma") -> torch.Tensor:
    """Return sigma as a tensor in [0, 1] that broadcasts against `like` sample by sample."""
    hint = f"0 is clean data and 1 pure noise; from a timestep, sigma = timestep / {NUM_TRAIN_TIMESTEPS}"
    if not isinstance(sigma, torch.Tensor):
        sigma = torch.tensor(check_number(sigma, name, finite=False, hint=hint), dtype=like.dtype, device=like.device)
    check_float_tensor(sigma, name)
    fits = sigma.numel() == 1 or (sigma.ndim == like.ndim and all(a in (1, b) for a, b in zip(sigma.shape, like.shape)))
    if not fits:
        raise CourseInputError(
            f"{name} of shape {tuple(sigma.shape)} does not broadcast sample by sample against a batch of shape "
            f"{tuple(like.shape)}. Give one number, or one per sample shaped (B, 1, ...): "
            f"{name}.reshape(-1, *[1] * {like.ndim - 1}).")
    outside = ~((sigma >= 0) & (sigma <= 1))  # NaN counts as outside
    if bool(outside.any()):
        bad = float(sigma[outside].flatten()[0]) if sigma.ndim else float(sigma)
        raise CourseInputError(f"{name}={bad} is outside [0, 1]: sigma = 0 is clean data and sigma = 1 pure noise. "
                               f"(From a timestep, sigma = timestep / {NUM_TRAIN_TIMESTEPS}.)")
    return sigma.to(like.device)


def _check_pair(first, second, first_name: str, second_name: str) -> None:
    check_float_tensor(first, first_name)
    check_float_tensor(second, second_name)
    check_same_shape(**{first_name: first, second_name: second})


# ----------------------------------------------------------------------------------------------
# The straight path and its velocity
# ----------------------------------------------------------------------------------------------

def interpolate(x0: torch.Tensor, noise: torch.Tensor, sigma) -> torch.Tensor:
    """Return the point of the straight path x_sigma = (1 - sigma) x0 + sigma eps.   [rectified flow, SD3, nb 03b]

    sigma: a number in [0, 1], or one per sample shaped (B, 1, ...). Shapes: x0, noise (B, ...).
    """
    _check_pair(x0, noise, "x0", "noise")
    sigma = _sigma_like(sigma, x0)
    return (1 - sigma) * x0 + sigma * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Return the path's velocity v = dx_sigma / dsigma = eps - x0, the same at every sigma.   [rectified flow, nb 03b]"""
    _check_pair(x0, noise, "x0", "noise")
    return noise - x0


def x0_from_velocity(v: torch.Tensor, x_sigma: torch.Tensor, sigma) -> torch.Tensor:
    """Return x0_hat = x_sigma - sigma v: follow the velocity to sigma = 0 in one straight step.   [nb 03b]"""
    _check_pair(v, x_sigma, "v", "x_sigma")
    return x_sigma - _sigma_like(sigma, x_sigma) * v


def eps_from_velocity(v: torch.Tensor, x_sigma: torch.Tensor, sigma) -> torch.Tensor:
    """Return eps_hat = x_sigma + (1 - sigma) v: follow the velocity to sigma = 1 in one straight step.   [nb 03b]"""
    _check_pair(v, x_sigma, "v", "x_sigma")
    return x_sigma + (1 - _sigma_like(sigma, x_sigma)) * v


# ----------------------------------------------------------------------------------------------
# The same path in diffusion's variables
# ----------------------------------------------------------------------------------------------

def _alpha_bar_tensor(alpha_bar) -> torch.Tensor:
    """Return alpha_bar (a number or a tensor) as a floating-point tensor after checking it lies in [0, 1]."""
    if isinstance(alpha_bar, torch.Tensor):
        return check_alpha_bar_t(alpha_bar, alpha_bar, "alpha_bar")
    return check_alpha_bar_t(alpha_bar, torch.empty(()), "alpha_bar")


def sigma_from_alpha_bar(alpha_bar) -> torch.Tensor:
    """Return the flow sigma with diffusion's SNR at ab: sqrt(1 - ab) / (sqrt(ab) + sqrt(1 - ab)).   [nb 03b]

    SNR of x_t is ab / (1 - ab); SNR of x_sigma is (1 - sigma)^2 / sigma^2; they agree exactly here.
    alpha_bar: a number or a tensor in [0, 1]; returns a tensor of the same shape.
    """
    alpha_bar = _alpha_bar_tensor(alpha_bar)
    a, b = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    return b / (a + b)


def alpha_bar_from_sigma(sigma) -> torch.Tensor:
    """Return the ab with the SNR of flow level sigma: (1 - sigma)^2 / ((1 - sigma)^2 + sigma^2).   [nb 03b]

    The inverse of sigma_from_alpha_bar. sigma: a number or a tensor in [0, 1].
    """
    if not isinstance(sigma, torch.Tensor):
        sigma = _sigma_like(sigma, torch.empty(()))
    sigma = _sigma_like(sigma, sigma)
    return (1 - sigma) ** 2 / ((1 - sigma) ** 2 + sigma**2)


def x_sigma_from_xt(xt: torch.Tensor, alpha_bar) -> torch.Tensor:
    """Return the flow point x_sigma = x_t / (sqrt(ab) + sqrt(1 - ab)), at sigma = sigma_from_alpha_bar(ab).   [nb 03b]

    For x_t = sqrt(ab) x0 + sqrt(1 - ab) eps this is exactly interpolate(x0, eps, sigma), the same
    x0 and eps. alpha_bar: a number, or one per sample shaped (B, 1, ...) (schedules.gather).
    """
    check_float_tensor(xt, "xt")
    alpha_bar = check_alpha_bar_t(alpha_bar, xt, "alpha_bar")
    return xt / (alpha_bar.sqrt() + (1 - alpha_bar).sqrt())


def velocity_from_v_diffusion(v_diffusion: torch.Tensor, xt: torch.Tensor, alpha_bar) -> torch.Tensor:
    """Return the flow velocity eps - x0 = (sqrt(ab) + sqrt(1-ab)) v_diffusion + (sqrt(1-ab) - sqrt(ab)) x_t.   [nb 03b]

    With a = sqrt(ab), b = sqrt(1 - ab) (a^2 + b^2 = 1): eps = b x_t + a v_diffusion and
    x0 = a x_t - b v_diffusion, so eps - x0 = (a + b) v_diffusion + (b - a) x_t. The map is linear,
    so it holds for predictions too: a diffusion v-prediction model gives a flow velocity field.
    alpha_bar: a number, or one per sample shaped (B, 1, ...).
    """
    _check_pair(v_diffusion, xt, "v_diffusion", "xt")
    alpha_bar = check_alpha_bar_t(alpha_bar, xt, "alpha_bar")
    a, b = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    return (a + b) * v_diffusion + (b - a) * xt


# ----------------------------------------------------------------------------------------------
# Training: regress the velocity, with the course's one loop
# ----------------------------------------------------------------------------------------------

def _check_flow_model(model, fix: str) -> None:
    """Raise unless `model` predicts a flow velocity; a plain callable without a config is taken as one."""
    if getattr(model, "config", None) is None:
        return
    declared = models.model_prediction_type(model)
    if declared != "flow":
        what = _DIFFUSION_OUTPUTS.get(declared, repr(declared))
        raise CourseInputError(
            f"this model predicts {what} (config.prediction_type={declared!r}), not a flow-matching velocity: "
            f"it is a diffusion model. Sample it with models.generate(model, shape, models.SCHEDULE.alpha_bars, "
            f"sampler='ddim'), a diffusion sampler; {fix}")


SIGMA_DENSITIES = ("uniform", "logit_normal")  # how training draws the noise level sigma


def shift_sigma(sigma, shift: float):
    """Return shift * sigma / (1 + (shift - 1) * sigma): SD3's time shift, which moves noise levels toward 1.   [SD3 eq. 23, nb 10]

    shift 1 leaves sigma as it is; shift 3 (SD3 at 1024 px) sends 0.5 to 0.75. The same map bends the
    sampling sigmas of FlowMatchEulerDiscreteScheduler(shift=...) and, in SD3's training, the noise
    levels drawn: a model trained with a shift should be sampled with it. sigma: a number or a tensor in
    [0, 1]; shift: a number > 0 (the scheduler's own range).
    """
    shift = _check_shift(shift)
    if not isinstance(sigma, torch.Tensor):
        sigma = torch.tensor(check_number(sigma, "sigma", low=0, high=1, hint="0 is clean data and 1 pure noise"))
    check_float_tensor(sigma, "sigma")
    if not bool(((sigma >= 0) & (sigma <= 1)).all()):
        raise CourseInputError("sigma must lie in [0, 1] (0 is clean data, 1 pure noise); got values outside it.")
    return shift * sigma / (1 + (shift - 1) * sigma)


def _check_shift(shift) -> float:
    return check_number(shift, "shift", low=0, low_open=True,
                        hint="SD3's timestep shift: 1 leaves the sigmas as they are, 3 is SD3's at 1024 px")


def sample_sigmas(batch: int, generator: torch.Generator | None = None, *, density: str = "uniform",
                  shift: float = 1.0, device=None) -> torch.Tensor:
    """Return (batch,) noise levels sigma in (0, 1) for training: U(0, 1), or SD3's logit-normal, then shifted.   [SD3 sec. 3.1, nb 03b, 10]

    "uniform": sigma ~ U(0, 1) (rectified flow as first written); "logit_normal": sigma = sigmoid(n),
    n ~ N(0, 1) (Esser et al. 2024, rf/lognorm(0.00, 1.00): more training where the velocity is hardest
    to predict, the middle; diffusers' compute_density_for_timestep_sampling draws the same law). Then
    shift_sigma(sigma, shift). Drawn on the generator's device, returned there unless `device` is given.
    """
    density = check_choice(density, SIGMA_DENSITIES, "density")
    batch, shift = check_positive_int(batch, "batch"), _check_shift(shift)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    if density == "uniform":
        sigma = torch.rand(batch, generator=generator, device=gen_device)
    else:
        sigma = torch.sigmoid(noise_lib.randn((batch,), generator, device=gen_device))  # the one rule for noise
    if shift != 1.0:
        sigma = shift_sigma(sigma, shift)
    return sigma if device is None else sigma.to(device)


def flow_matching_loss(model: nn.Module, batch, generator: torch.Generator | None = None, *, density: str = "uniform",
                       shift: float = 1.0, cond_dropout: float = 0.0, null_cond: dict | None = None) -> torch.Tensor:
    """Return E || (eps - x0) - v_theta(x_sigma, 1000 sigma) ||^2, sigma per example (sample_sigmas).   [rectified flow, SD3, nb 03b, 10]

    sigma (uniform, or SD3's logit-normal with a shift) and eps ~ N(0, I) are drawn from `generator`.
    batch: a tensor x0, or a dict {"x0": ...}; a dict with "noise" pairs each x0 with that noise instead
    of a fresh draw (reflow); other keys go to the model (encoder_hidden_states, pooled_projections for
    SD3's transformer). With cond_dropout = p each example's condition becomes null_cond with probability
    p (the empty prompt's: classifier-free guidance, as training.diffusion_loss). A loss_fn for
    training.train. Shapes: x0 (B, ...); returns a scalar.
    """
    x0, cond = training.split_batch(batch)
    noise = cond.pop("noise", None)
    check_float_tensor(x0, "x0")
    generator = noise_lib.as_generator(generator)
    shift = check_number(shift, "shift", low=0, low_open=True, hint="SD3's time shift; 1 leaves sigma unchanged")
    cond_dropout = check_number(cond_dropout, "cond_dropout", low=0, high=1, hint="the share of captions dropped")
    gen_device = generator.device if generator is not None else torch.device("cpu")
    # 1. a noise level per example, and a noise (unless the batch pairs each x0 with one)
    sigma = sample_sigmas(x0.shape[0], generator, density=density, shift=shift).to(x0.device, x0.dtype)
    sigma = sigma.reshape(-1, *[1] * (x0.ndim - 1))  # (B, 1, ...)
    noise = noise_lib.given_or_drawn(noise, x0, generator, "noise", "x0")
    if cond_dropout > 0:  # classifier-free guidance: some captions become the empty prompt's condition
        if not null_cond:
            raise CourseInputError("cond_dropout > 0 needs null_cond, e.g. the condition of the empty prompt \"\".")
        drop = torch.rand(x0.shape[0], generator=generator, device=gen_device) < cond_dropout
        cond = training.drop_condition(cond, null_cond, drop)
    # 2. the point on the straight line, and the velocity along it
    x_sigma = interpolate(x0, noise, sigma)
    target = velocity_target(x0, noise)
    # 3. the model sees sigma as a timestep in [0, 1000], as SD3
    v_hat = models.model_output(model, x_sigma, sigma.flatten() * NUM_TRAIN_TIMESTEPS, **cond)
    return F.mse_loss(v_hat.float(), target.float())


# Flow matching on two moons (fresh data every step): 2,000 steps, after which 32 Euler steps reach the data floor.
TRAIN_CONFIG = dict(steps=2000, batch_size=512, lr=2e-3, lr_schedule="cosine", lr_warmup_steps=100,
                    ema_decay=0.995, grad_clip=1.0, seed=0)


def train(x0=None, config: training.TrainConfig | None = None, *, model: nn.Module | None = None,
          device=None, progress: bool | None = False) -> training.TrainState:
    """Train a flow-matching velocity model with training.train and flow_matching_loss; return the TrainState.   [nb 03b]

    x0: training data, a tensor (N, D) or a dict {"x0": ..., "noise": ...} (reflow pairs); None draws
    a fresh batch of data.two_moons from the run's generator at every step. config defaults to
    TrainConfig(**TRAIN_CONFIG); model to models.time_mlp(seed=config.seed, prediction_type="flow").
    The same seed gives the same weights. state.sampling_model (the EMA weights) is what to sample;
    state.losses the loss per step.
    """
    config = training.check_config(config, TRAIN_CONFIG)
    if model is None:
        model = models.time_mlp(seed=config.seed, prediction_type="flow")
    _check_flow_model(model, "to train a flow model, build one with models.time_mlp(seed=0, prediction_type='flow').")
    if x0 is not None and not isinstance(x0, (torch.Tensor, dict)):
        raise CourseInputError(f"x0 must be training data, a tensor (N, D) or a dict {{'x0': ..., 'noise': ...}}, or None "
                               f"for fresh two moons; got {type(x0).__name__}.")
    if x0 is None:
        def fresh_moons(generator):
            return course_data.two_moons(config.batch_size, generator)
        x0 = fresh_moons
    return training.train(model, x0, flow_matching_loss, config, device=device, progress=progress)


# ----------------------------------------------------------------------------------------------
# Sampling: Euler on dx/dsigma = v_theta, from sigma = 1 to 0
# ----------------------------------------------------------------------------------------------

def inference_sigmas(num_steps: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """Return the num_steps + 1 sigmas Euler visits, 1 down to 1/T, then 0: FlowMatchEulerDiscreteScheduler's.   [nb 03b]

    As diffusers' set_timesteps(num_steps) with shift=1.0: timesteps = linspace(T sigma_max, T sigma_min,
    N) with sigma_max = 1 and sigma_min = 1/T (the smallest training sigma, in float32), sigmas =
    timesteps / T in float32, then a final 0. The model is called at timesteps = sigmas[:-1] * T.
    Note that N = 2 gives 1, 0.001, 0: the first step goes almost all the way, so 2 steps sample much
    as 1 does. Shapes: returns (num_steps + 1,) float32.
    """
    num_steps = check_positive_int(num_steps, "num_steps")
    num_train_timesteps = check_positive_int(num_train_timesteps, "num_train_timesteps")
    sigma_min = float(torch.tensor(1.0) / num_train_timesteps)  # float32 1/T, as diffusers stores it
    timesteps = np.linspace(1.0 * num_train_timesteps, sigma_min * num_train_timesteps, num_steps)
    sigmas = torch.from_numpy(timesteps / num_train_timesteps).to(torch.float32)
    return torch.cat([sigmas, torch.zeros(1)])


def euler_step(v: torch.Tensor, x_sigma: torch.Tensor, sigma, sigma_next) -> samplers.Step:
    """Take one Euler step x' = x + (sigma' - sigma) v; return it with x0_hat = x - sigma v.   [nb 03b]

    As FlowMatchEulerDiscreteScheduler.step: computed in float32 (float64 for float64 input), returned
    in v's dtype. With sigma' = 0 it lands on x0_hat: one step is the straight line v points along.
    """
    _check_pair(v, x_sigma, "v", "x_sigma")
    return _euler_update(v, x_sigma, _sigma_like(sigma, x_sigma), _sigma_like(sigma_next, x_sigma, "sigma_next"))


def _euler_update(v, x_sigma, sigma, sigma_next) -> samplers.Step:
    x_next = x_sigma.to(torch.promote_types(x_sigma.dtype, torch.float32)) + (sigma_next - sigma) * v
    return samplers.Step(x_next.to(v.dtype), x_sigma - sigma * v)


def evaluations(num_steps: int) -> int:
    """Return the model evaluations generate spends on num_steps Euler steps: one per step."""
    return check_positive_int(num_steps, "num_steps")


def _check_shape(shape, model) -> tuple[int, ...]:
    shape = models.check_shape(shape)
    data_dim = getattr(getattr(model, "config", None), "data_dim", None)
    if data_dim is not None and (len(shape) != 2 or shape[1] != data_dim):
        raise CourseInputError(f"this model works on points of dimension {data_dim}: ask for shape (n, {data_dim}), "
                               f"got {tuple(shape)}.")
    return shape


def generate(model, shape: tuple[int, ...] | None, num_steps: int = 50, *, noise: torch.Tensor | None = None,
             generator: torch.Generator | None = None, device=None, keep_trajectory: bool = False,
             progress: bool = False) -> samplers.SampleOutput:
    """Integrate dx/dsigma = v_theta(x, 1000 sigma) from x1 ~ N(0, I) at sigma = 1 to sigma = 0 by Euler.   [nb 03b]

    The sigmas are inference_sigmas(num_steps), the model is called at timestep = sigma * 1000, and
    every step is euler_step: the same numbers as diffusers' FlowMatchEulerDiscreteScheduler (shift=1.0)
    step for step, at num_steps model evaluations. x1 is `noise` (finite), or drawn by noise.randn from
    `generator` (or an int seed) on its device, then moved to `device` (default: the model's), as
    models.generate does.
    model: a flow model (config.prediction_type="flow") or any callable v(x, timestep).
    The run goes through samplers.sample, the course's one sampling loop, with the steps numbered
    N-1, ..., 0 (-1 after the last is sigma = 0); keep_trajectory keeps every x (N + 1) and x0_hat (N).
    Shapes: shape (n, D), or None with noise (n, D) given; returns SampleOutput with x0 (n, D).
    """
    if not callable(model):
        raise CourseInputError(f"model must be a velocity model v(x, timestep) (a flow model, or a function), "
                               f"got {type(model).__name__}.")
    _check_flow_model(model, "flow.generate needs a velocity model, e.g. one trained with flow.train.")
    num_steps = check_positive_int(num_steps, "num_steps")
    generator = noise_lib.as_generator(generator)
    if device is not None:
        device = check_device(device)
    elif isinstance(model, nn.Module):
        device = models.model_device(model)
    else:
        device = torch.device("cpu")
    if noise is None:
        if shape is None:
            raise CourseInputError("give shape, e.g. (2000, 2), or the starting noise as noise=x1.")
        x1 = noise_lib.randn(_check_shape(shape, model), generator, device=device)
    else:
        check_float_tensor(noise, "noise")
        check_finite(noise, "noise")
        _check_shape(tuple(noise.shape), model)
        if shape is not None and _check_shape(shape, model) != tuple(noise.shape):
            raise CourseInputError(f"shape {tuple(shape)} and noise {tuple(noise.shape)} disagree: "
                                   f"pass shape=None with noise, or noise of that shape.")
        x1 = noise.to(device)
    num_train_timesteps = getattr(getattr(model, "config", None), "num_train_timesteps", None) or NUM_TRAIN_TIMESTEPS
    sigmas = inference_sigmas(num_steps, num_train_timesteps).to(device)
    if isinstance(model, nn.Module):
        model.eval()

    def level(k: int) -> torch.Tensor:  # step k (N-1 .. 0, then -1) sits at sigmas[N - 1 - k]
        return sigmas[num_steps - 1 - k]

    def velocity(x: torch.Tensor, k: int) -> torch.Tensor:
        timestep = level(k) * num_train_timesteps  # the scheduler's timesteps, float32
        return models.model_output(model, x, timestep.expand(x.shape[0]))

    def step(v, x, k, k_next, generator=None):
        return _euler_update(v, x, level(k), level(k_next))

    return samplers.sample(velocity, x1, range(num_steps - 1, -1, -1), step, keep_trajectory=keep_trajectory,
                           progress=progress)


# ----------------------------------------------------------------------------------------------
# Reflow: straighten the learned flow, so one or two Euler steps suffice
# ----------------------------------------------------------------------------------------------

# Fine-tuning on the pairs: shorter and gentler than training from scratch.
REFLOW_CONFIG = dict(steps=1000, batch_size=512, lr=1e-3, lr_schedule="cosine", lr_warmup_steps=0,
                     ema_decay=0.995, grad_clip=1.0, seed=0)


def reflow(model: nn.Module, num_pairs: int = 10_000, num_steps: int = 32, config: training.TrainConfig | None = None,
           *, device=None, progress: bool | None = False) -> training.TrainState:
    """Train a copy of model on the straight lines from x1 ~ N(0, I) to x0_hat = generate(model, noise=x1).   [rectified flow, nb 03b]

    Independent (x0, eps) pairs cross each other, so the learned velocity averages directions and
    its paths bend; a model's own (x0_hat, x1) pairs do not cross, and flow matching on them
    (flow_matching_loss with batch {"x0": x0_hat, "noise": x1}) learns nearly straight paths that
    one or two Euler steps follow. x1 is drawn from torch.Generator().manual_seed(config.seed + 1),
    the pairs with num_steps Euler steps; config defaults to TrainConfig(**REFLOW_CONFIG); the new
    model starts from model's weights. Returns the TrainState of the new model.
    """
    if not isinstance(model, nn.Module):
        raise CourseInputError(f"reflow straightens a flow model (an nn.Module), got {type(model).__name__}.")
    _check_flow_model(model, "reflow straightens a flow model, e.g. flow.train().sampling_model.")
    num_pairs = check_positive_int(num_pairs, "num_pairs")
    data_dim = getattr(getattr(model, "config", None), "data_dim", None)
    if data_dim is None:
        raise CourseInputError("reflow needs a model whose config gives data_dim (a models.TimeMLP), "
                               "to know the shape of the noise to pair.")
    config = training.check_config(config, REFLOW_CONFIG)
    x1 = noise_lib.randn((num_pairs, data_dim), torch.Generator().manual_seed(config.seed + 1))
    pairs = reflow_pairs(model, x1, num_steps, device=device)
    student = copy.deepcopy(model).requires_grad_(True)  # an EMA copy comes frozen
    return train(pairs, config, model=student, device=device, progress=progress)


def reflow_pairs(model, x1: torch.Tensor, num_steps: int = 32, *, device=None) -> dict:
    """Return reflow's training pairs {"x0": generate(model, noise=x1, num_steps).x0, "noise": x1}, on the CPU.   [rectified flow, nb 03b]

    Each noise x1 is paired with the sample the model reaches from it (num_steps Euler steps), not with
    an independent data point: the coupling reflow trains on. Shapes: x1 (n, D) -> {"x0", "noise"} (n, D).
    """
    check_float_tensor(x1, "x1")
    x0_hat = generate(model, None, num_steps, noise=x1, device=device).x0.cpu()
    return {"x0": x0_hat, "noise": x1.cpu()}


def path_straightness(paths: torch.Tensor) -> float:
    """Return (total length of the paths) / (total distance from their starts to their ends): 1 if every path is straight.   [nb 03b]

    Summed over the n samples before dividing, so that a path whose end happens to lie near its start does
    not dominate. paths: (K, n, D), the K states of n samples in order (flow.generate's trajectory, stacked).
    """
    check_float_tensor(paths, "paths")
    if paths.ndim != 3 or len(paths) < 2:
        raise CourseInputError(f"paths must be (K, n, D) with K >= 2 states, got {tuple(paths.shape)}; stack a "
                               f"trajectory with torch.stack(output.trajectory).")
    p = paths.double()
    length = (p[1:] - p[:-1]).norm(dim=-1).sum(0)
    chord = (p[-1] - p[0]).norm(dim=-1)
    return float(length.sum() / chord.sum().clamp_min(1e-12))
