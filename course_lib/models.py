"""The denoisers the course trains: a small MLP for 2D points and a diffusers UNet2DModel for digits.   [notebook 03]

Both follow diffusers' calling convention, model(sample, timestep, **condition), and both save and
load with save_pretrained / from_pretrained (the MLP is a diffusers ModelMixin too), so the same
checkpoint code serves every model of the course. `model_output` reads the prediction out of
whatever a model returns; `as_denoiser` turns a trained model into the model(xt, t) callable that
samplers.sample runs; `generate` is that one sampling loop with the usual settings filled in.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin, UNet2DModel
from diffusers.configuration_utils import register_to_config
from torch import nn

from course_lib import noise as noise_lib
from course_lib import posterior, samplers, schedules
from course_lib.validation import (CourseInputError, check_alpha_bars, check_bool, check_choice, check_device,
                                   check_float_tensor, check_int)

# The schedule every model of notebooks 03 and 06 (2D, digits) is trained and sampled with: DDPM's linear
# betas over 1,000 steps. It lives with the models; the retraining recipes and the notebooks import it.
SCHEDULE = schedules.NoiseSchedule("linear", 1000)


@contextlib.contextmanager
def seeded(seed: int):
    """Run a block (e.g. a model's construction) with torch's global RNG seeded, then restore it."""
    seed = check_int(seed, "seed", minimum=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# ----------------------------------------------------------------------------------------------
# 2D: an MLP with a sinusoidal time embedding
# ----------------------------------------------------------------------------------------------

def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Embed integer timesteps as [cos(t w_k), sin(t w_k)], w_k = max_period^(-k / (dim/2)), k < dim/2.   [Transformer sec. 3.5, DDPM app. B, nb 03]

    The same numbers as diffusers' get_timestep_embedding(t, dim, flip_sin_to_cos=True,
    downscale_freq_shift=0). Shapes: t (B,) -> (B, dim).
    """
    dim = check_int(dim, "dim", minimum=2)
    if dim % 2:
        raise CourseInputError(f"the embedding dimension must be even, got {dim}.")
    if not isinstance(t, torch.Tensor) or t.ndim != 1 or t.dtype == torch.bool:
        raise CourseInputError(f"t must be a 1-D tensor of timesteps, one per sample (B,), got "
                               f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}.")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


# What a model's output means: diffusers' three, and "flow" for a flow-matching velocity (notebook 03b).
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction", "flow")


class TimeMLP(ModelMixin, ConfigMixin):
    """eps_theta(x_t, t) for points in R^D: an MLP with residual layers and a sinusoidal time embedding.   [nb 03]

    h = W_in x_t + MLP(emb(t));  h <- h + W_l SiLU(h) for each layer;  eps_hat = W_out SiLU(h).
    Called like a diffusers model: model(xt, t) with t an int, float or (B,) tensor; returns (B, D).
    config.prediction_type says what the output is: "epsilon" (notebook 03), or "flow", the velocity
    of a flow-matching model (notebook 03b, course_lib.flow), which the diffusion samplers refuse.
    """

    @register_to_config
    def __init__(self, data_dim: int = 2, hidden_dim: int = 128, num_layers: int = 4, time_embed_dim: int = 64,
                 num_train_timesteps: int = 1000, prediction_type: str = "epsilon"):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise CourseInputError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")
        for value, name, low in ((data_dim, "data_dim", 1), (hidden_dim, "hidden_dim", 1), (num_layers, "num_layers", 0),
                                 (time_embed_dim, "time_embed_dim", 2), (num_train_timesteps, "num_train_timesteps", 1)):
            check_int(value, name, minimum=low)
        self.time_mlp = nn.Sequential(nn.Linear(time_embed_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim))
        self.x_in = nn.Linear(data_dim, hidden_dim)
        self.layers = nn.ModuleList(nn.Linear(hidden_dim, hidden_dim) for _ in range(num_layers))
        self.x_out = nn.Linear(hidden_dim, data_dim)

    def forward(self, sample: torch.Tensor, timestep) -> torch.Tensor:
        check_float_tensor(sample, "sample")
        if sample.ndim != 2 or sample.shape[1] != self.config.data_dim:
            raise CourseInputError(f"sample must have shape (B, {self.config.data_dim}) for this TimeMLP, "
                                   f"got {tuple(sample.shape)}.")
        t = torch.as_tensor(timestep, device=sample.device)
        if t.ndim == 0:
            t = t.expand(sample.shape[0])
        if t.shape != (sample.shape[0],):
            raise CourseInputError(f"timestep must be one number or one per sample ({sample.shape[0]},), "
                                   f"got shape {tuple(t.shape)}.")
        h = self.x_in(sample) + self.time_mlp(timestep_embedding(t, self.config.time_embed_dim))  # (B, H)
        for layer in self.layers:
            h = h + layer(nn.functional.silu(h))
        return self.x_out(nn.functional.silu(h))  # (B, D)


def time_mlp(seed: int = 0, **config) -> TimeMLP:
    """Return a TimeMLP initialised from `seed` (the global RNG is left untouched)."""
    with seeded(seed):
        return TimeMLP(**config)


# ----------------------------------------------------------------------------------------------
# Digits: a small diffusers UNet2DModel; unconditional, or class-conditional with a null class for guidance
# ----------------------------------------------------------------------------------------------

NUM_DIGIT_CLASSES = 10
NULL_CLASS = NUM_DIGIT_CLASSES  # class id 10 means "no label": unconditional samples, and CFG (nb 06)

DIGITS_UNET_CONFIG = dict(
    sample_size=16,
    in_channels=1,
    out_channels=1,                       # eps_hat has the image's shape
    block_out_channels=(32, 64, 64),      # 16x16 -> 8x8 -> 4x4
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    layers_per_block=1,
    attention_head_dim=32,
    norm_num_groups=8,
    num_train_timesteps=1000,
)


def digits_unet(seed: int = 0, conditional: bool = False, **overrides) -> UNet2DModel:
    """Return the course's digits UNet2DModel (DIGITS_UNET_CONFIG, updated by `overrides`), initialised from `seed`.

    conditional=True adds a class embedding for 11 classes: the digits 0-9 and NULL_CLASS (10), the
    "no label" class that label dropout trains, for classifier-free guidance (nb 06).
    """
    conditional = check_bool(conditional, "conditional")
    config = {**DIGITS_UNET_CONFIG, **({"num_class_embeds": NUM_DIGIT_CLASSES + 1} if conditional else {}), **overrides}
    with seeded(seed):
        return UNet2DModel(**config)


def num_parameters(model: nn.Module) -> int:
    """Return the number of parameters of a model."""
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------
# From a trained model to samples: one adapter, then samplers.sample
# ----------------------------------------------------------------------------------------------

def model_output(model: nn.Module, xt: torch.Tensor, t: torch.Tensor, **condition) -> torch.Tensor:
    """Return the model's prediction for (xt, t): a tensor like xt, whatever the model returns.

    diffusers models return an output object with .sample (or a tuple with return_dict=False);
    the course's own models return the tensor. `condition` goes to the model as keyword arguments
    (class_labels for the digits UNet, encoder_hidden_states for a text-conditioned UNet,
    encoder_hidden_states and pooled_projections for SD3's transformer).
    An image-conditioned model (InstructPix2Pix, nb 09) gets `image_latents` (B, C', h, w)
    concatenated to xt on the channels, as StableDiffusionInstructPix2PixPipeline does.
    """
    image_latents = condition.pop("image_latents", None)
    if image_latents is not None:
        xt = torch.cat([xt, image_latents.to(xt.dtype)], dim=1)
    # diffusers' models all name it `timestep`, but not all take it second (SD3Transformer2DModel's forward is
    # (hidden_states, encoder_hidden_states, pooled_projections, timestep)): pass it by name to them
    out = model(xt, timestep=t, **condition) if isinstance(model, ModelMixin) else model(xt, t, **condition)
    if hasattr(out, "sample"):
        out = out.sample
    elif isinstance(out, (tuple, list)):
        out = out[0]
    return out


def _expand_condition(value, batch: int, device) -> torch.Tensor:
    value = torch.as_tensor(value, device=device)
    if value.ndim == 0:
        return value.expand(batch)
    if value.shape[0] == 1 and batch > 1:
        return value.expand(batch, *value.shape[1:])
    return value


def model_dtype(model) -> torch.dtype:
    """Return the dtype of a model's parameters (float32 for a model without parameters)."""
    try:
        return next(model.parameters()).dtype
    except StopIteration:
        return torch.float32


def timestep_batch(t, batch: int, device) -> torch.Tensor:
    """Return t as a (B,) tensor: int64 for a whole timestep, float32 for a fractional one (Euler's 'linspace' 832.5),
    as diffusers passes it; a (B,) tensor keeps one timestep per row."""
    if isinstance(t, torch.Tensor) and t.ndim == 1:
        return t.to(device)
    t = float(t)
    if t.is_integer():
        return torch.full((batch,), int(t), dtype=torch.long, device=device)
    return torch.full((batch,), t, dtype=torch.float32, device=device)


def call_model(model, x: torch.Tensor, t, condition: dict | None = None) -> torch.Tensor:
    """Return the model's output for (x, t, condition) in x's dtype: the course's one denoiser call.   [nb 03, 06]

    t (a number, or one timestep per row) becomes a (B,) tensor (timestep_batch); x and the floating-point
    conditions go to the model in its own dtype (float16 weights on a GPU, float32 latents here), on x's
    device; model_output reads the prediction (and concatenates `image_latents`, InstructPix2Pix's source
    latent, to x). Internal: callers check their inputs at their own door.
    Shapes: x (B, C, h, w), condition values (B, ...) -> (B, C_out, h, w).
    """
    dtype = model_dtype(model)
    rows = {k: (v.to(x.device, dtype) if torch.is_floating_point(v) else v.to(x.device))
            for k, v in (condition or {}).items()}
    return model_output(model, x.to(dtype), timestep_batch(t, x.shape[0], x.device), **rows).to(x.dtype)


def as_denoiser(model: nn.Module, **condition):
    """Return model(xt, t) -> output, the callable samplers.sample runs, for a trained diffusion model.   [nb 03]

    The model is put in eval mode and run without gradients through call_model (t becomes a (B,) tensor:
    int64, or float32 for a fractional t such as Euler's 'linspace' 832.5, as diffusers passes it); each
    condition (e.g. class_labels=3, or a (B,) tensor of labels) is broadcast to the batch. A flow-matching
    model is refused: flow.generate samples it.
    """
    if not callable(model):
        raise CourseInputError(f"model must be a trained network (a torch nn.Module), got {type(model).__name__}.")
    check_diffusion_model(model, model_prediction_type(model))
    if isinstance(model, nn.Module):
        model.eval()

    @torch.no_grad()
    def denoiser(xt: torch.Tensor, t) -> torch.Tensor:
        b = xt.shape[0]
        cond = {k: _expand_condition(v, b, xt.device) for k, v in condition.items()}
        return call_model(model, xt, t, cond)

    return denoiser


def model_device(model: nn.Module) -> torch.device:
    """Return the device a model's parameters live on (the CPU for a model without parameters)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


model_prediction_type = posterior.model_prediction_type  # what a model's output means, from its config


def check_diffusion_model(model, prediction: str) -> None:
    """Raise if a flow-matching model is given to a diffusion sampler, or its config disagrees with `prediction`."""
    declared = model_prediction_type(model)
    if declared == "flow":
        raise CourseInputError("this model predicts a flow-matching velocity (config.prediction_type='flow'), not eps: "
                               "the diffusion samplers would read it wrongly. Sample it with course_lib.flow.generate.")
    if getattr(model, "config", None) is not None and "prediction_type" in model.config and declared != prediction:
        raise CourseInputError(f"the model's config says prediction_type={declared!r}, but {prediction!r} was asked for; "
                               f"leave prediction_type out to use the model's own.")


def check_shape(shape, name: str = "shape") -> tuple[int, ...]:
    """Return shape as a tuple of ints if it is a non-empty sequence of positive ints (numpy ints too), else raise."""
    if isinstance(shape, (int, np.integer)) or not isinstance(shape, (tuple, list, torch.Size)) or not shape:
        raise CourseInputError(f"{name} must be a tuple of positive ints such as (2000, 2), got {shape!r}.")
    return tuple(check_int(s, f"every entry of {name}", minimum=1) for s in shape)


def generate(model: nn.Module, shape: tuple[int, ...], alpha_bars: torch.Tensor, *, sampler="ddim",
             num_steps: int = 50, eta: float = 0.0, spacing: str = "trailing", prediction_type: str | None = None,
             clip_sample: bool = False, generator: torch.Generator | None = None, device=None,
             keep_trajectory: bool = False, progress: bool = False, **condition) -> samplers.SampleOutput:
    """Sample `shape` from a trained model with any sampler through samplers.sample (the one sampling loop).   [nb 03]

    sampler: a name ('ddpm', 'ddim', 'euler', 'heun', 'dpmpp_2m'; samplers.get_sampler) or a
    samplers.Sampler object (built with its own options); by name, DDPM uses variance "fixed_small", DDIM `eta`
    (refused for the others), and both `clip_sample` (clamp x0_hat to [-1, 1]; images only, never 2D toys).
    x_T ~ N(0, I) is drawn from `generator` (or an int seed) on its device (the CPU) and moved to the model's
    device, so a seed gives the same start on any device; so is the noise of DDPM and of DDIM with eta > 0.
    spacing="trailing" starts at t = T-1 for any number of steps (samplers.inference_timesteps).
    prediction_type: the model's config's, else "epsilon".
    """
    if not isinstance(model, nn.Module):
        raise CourseInputError(f"model must be a trained network (a torch nn.Module), got {type(model).__name__}; "
                               f"for a plain function, use samplers.sample.")
    shape = check_shape(shape)
    check_alpha_bars(alpha_bars, "alpha_bars")
    if prediction_type is not None:
        check_choice(prediction_type, posterior.PREDICTION_TYPES, "prediction_type")
    generator = noise_lib.as_generator(generator)
    if isinstance(sampler, str):
        prediction = prediction_type or model_prediction_type(model)
        check_diffusion_model(model, prediction)
        name = sampler.lower()
        options = {"prediction_type": prediction}
        if name in ("ddpm", "ddim"):
            options["clip_sample"] = clip_sample
        elif clip_sample is not False:
            raise CourseInputError(f"clip_sample is an option of ddpm and ddim; sampler={sampler!r} has none.")
        if name == "ddim":
            options["eta"] = eta
        elif eta != 0.0:
            raise CourseInputError(f"eta is DDIM's option; sampler={sampler!r} does not read it. Use sampler='ddim', "
                                   f"or leave eta out.")
        sampler = samplers.get_sampler(sampler, **options)
    else:
        sampler = samplers.get_sampler(sampler)
        if eta != 0.0 or clip_sample is not False:
            raise CourseInputError(f"eta and clip_sample go to the sampler's constructor by name; {sampler!r} is already "
                                   f"built: build it with them, e.g. samplers.DDIM(eta=0.5).")
        if prediction_type is not None and prediction_type != sampler.prediction_type:
            raise CourseInputError(f"prediction_type={prediction_type!r}, but {sampler!r} was built with "
                                   f"prediction_type={sampler.prediction_type!r}; build it with the one you mean.")
        check_diffusion_model(model, sampler.prediction_type)
    device = check_device(device) if device is not None else model_device(model)
    x_T = noise_lib.randn(shape, generator, device=device)
    timesteps = sampler.timesteps(len(alpha_bars), num_steps, spacing)
    return samplers.sample(as_denoiser(model, **condition), x_T, timesteps, sampler, alpha_bars=alpha_bars.to(device),
                           generator=generator, keep_trajectory=keep_trajectory, progress=progress)
