"""The one training loop of the course, and the diffusion loss it minimises by default.   [notebook 03]

`train(model, data, loss_fn, config)` runs an optimiser (AdamW by default) on ANY
`loss_fn(model, batch, generator) -> scalar tensor`: the diffusion eps-MSE here (nb 03), the VAE's
reconstruction + KL (nb 04), CLIP's contrastive loss (nb 05) and the text-conditioned UNet (nb 06)
all come through this one loop. It keeps an exponential moving average (EMA) of the weights and a
loss history, and draws every random number (batches, timesteps, noise, condition dropout) from one
torch.Generator, so the same seed on the same machine gives the same weights, and a saved run
resumes exactly where it stopped (model, optimiser, EMA, step and generator state).

Example (2D two moons, about 7 s per 1,000 steps on 2 CPU cores):

    >>> import functools, torch
    >>> from course_lib import data, models, schedules, training
    >>> x0 = data.two_moons(20_000, generator=torch.Generator().manual_seed(0))    # (N, 2)
    >>> model = models.time_mlp(seed=0)
    >>> loss_fn = functools.partial(training.diffusion_loss,
    ...                             alpha_bars=schedules.NoiseSchedule("linear").alpha_bars)
    >>> state = training.train(model, x0, loss_fn, training.TrainConfig(steps=2000, batch_size=512))
    >>> state.losses[:3], state.step       # per-step loss history, steps done
    >>> sampler_model = state.ema_model    # the EMA weights: what you sample with

`data` may be a tensor of examples, a dict of tensors with a shared first dimension (e.g.
{"x0": images, "class_labels": labels}), a callable `data(generator) -> batch`, or any iterable
(a DataLoader; cycled, but then resuming is not bit-exact). Batches of tensors/dicts are drawn with
`data.batch_sampler`, uniformly with replacement, from the generator.

Later notebooks:
    nb 04 VAE   train(vae, {"x0": images}, loss_fn=vae_loss, config)      with vae_loss(model, batch, g)
    nb 05 CLIP  train(clip, {"input_ids": ids, "pixel_values": px}, loss_fn=clip_loss, config)
    nb 06 UNet  train(unet, {"x0": latents, "encoder_hidden_states": emb}, loss_fn=functools.partial(
                   diffusion_loss, alpha_bars=ab, cond_dropout=0.1,
                   null_cond={"encoder_hidden_states": empty_prompt_emb}), config)
    LiT: freeze the image tower (requires_grad_(False)); the default optimiser only takes trainable
    parameters.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from course_lib import checkpoints, environment, models, posterior, schedules
from course_lib import data as course_data
from course_lib import noise as noise_lib
from course_lib.validation import (CourseInputError, check_alpha_bars, check_choice, check_device, check_float_tensor,
                                   check_int, check_number)

LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Everything that decides a training run besides the model, data and loss; saved in each manifest.

    steps          optimiser steps to reach (a resumed run continues up to this number)
    batch_size     examples per step when `data` is a tensor or a dict of tensors
    lr             peak learning rate; lr_warmup_steps ramps it linearly from 0, lr_schedule then
                   keeps it ("constant") or decays it to 0 at `steps` ("cosine")
    ema_decay      EMA of the weights, w_ema <- d w_ema + (1 - d) w, with d warmed up as
                   min(ema_decay, (1 + step) / (10 + step)); 0 switches the EMA off
    grad_clip      clip the global gradient norm to this (None: no clipping)
    seed           seeds the generator when train() is not given one
    autocast       None, or "bfloat16"/"float16": run the loss under torch.autocast (faster on some CPUs)
    checkpoint_every  save the training state every N steps to train(checkpoint_dir=...) (0: only at the end)
    time_limit_s   stop early after this many seconds of training (None: no limit; not deterministic)
    """

    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    lr_warmup_steps: int = 0
    lr_schedule: str = "constant"
    ema_decay: float = 0.999
    grad_clip: float | None = 1.0
    seed: int = 0
    autocast: str | None = None
    checkpoint_every: int = 0
    time_limit_s: float | None = None

    def __post_init__(self):
        check_choice(self.lr_schedule, LR_SCHEDULES, "lr_schedule")
        for name, minimum in (("steps", 0), ("batch_size", 1), ("lr_warmup_steps", 0), ("seed", 0),
                              ("checkpoint_every", 0)):
            setattr(self, name, check_int(getattr(self, name), name, minimum=minimum))
        self.lr = check_number(self.lr, "lr", low=0, low_open=True, hint="the peak learning rate, e.g. 1e-3")
        self.weight_decay = check_number(self.weight_decay, "weight_decay", low=0)
        self.ema_decay = check_number(self.ema_decay, "ema_decay", low=0, high=1, high_open=True,
                                      hint="use 0 for no EMA")
        if self.grad_clip is not None:
            self.grad_clip = check_number(self.grad_clip, "grad_clip", low=0, low_open=True, hint="None for no clipping")
        if self.time_limit_s is not None:
            self.time_limit_s = check_number(self.time_limit_s, "time_limit_s", low=0, low_open=True,
                                             hint="None for no limit")
        if self.autocast is not None:
            check_choice(self.autocast, ("bfloat16", "float16"), "autocast")
        if isinstance(self.adam_betas, (str, bytes)) or not hasattr(self.adam_betas, "__len__") or len(self.adam_betas) != 2:
            raise CourseInputError(f"adam_betas must be two numbers in [0, 1), e.g. (0.9, 0.999), got {self.adam_betas!r}.")
        self.adam_betas = tuple(check_number(b, "each of adam_betas", low=0, high=1, high_open=True)
                                for b in self.adam_betas)

    def to_dict(self) -> dict:
        """Return the fields, JSON-ready (for a manifest)."""
        d = asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Return the config a manifest saved (keys this version does not know are left out)."""
        if not isinstance(d, dict):
            raise CourseInputError(f"from_dict takes a dict (a manifest's config), got {type(d).__name__}.")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def lr_at(self, step: int) -> float:
        """Return the learning rate for optimiser step `step` (0-based): warm-up, then constant or cosine."""
        step = check_int(step, "step", minimum=0)
        if self.lr_warmup_steps and step < self.lr_warmup_steps:
            return self.lr * (step + 1) / self.lr_warmup_steps
        if self.lr_schedule == "cosine":
            span = max(1, self.steps - self.lr_warmup_steps)
            done = min(1.0, (step - self.lr_warmup_steps) / span)
            return self.lr * 0.5 * (1 + math.cos(math.pi * done))
        return self.lr


@dataclass
class TrainState:
    """A training run: the model, its EMA copy, the optimiser, the generator, the step reached and the losses.

    `train` returns one; pass it back as `train(..., resume=state)` (or save it with
    checkpoints.save_training_state and resume from the folder) to go on training.
    """

    model: torch.nn.Module
    ema_model: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    config: TrainConfig
    step: int = 0
    losses: list[float] = field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def sampling_model(self) -> torch.nn.Module:
        """The weights to sample with: the EMA copy when there is one, else the trained model."""
        return self.ema_model if self.ema_model is not None else self.model


# ----------------------------------------------------------------------------------------------
# The diffusion loss [DDPM eq. 14 / Alg. 1, nb 03]
# ----------------------------------------------------------------------------------------------

def check_config(config, default: dict | None = None) -> TrainConfig:
    """Return config if it is a TrainConfig, or TrainConfig(**default) (TrainConfig() without one) for None."""
    if config is None:
        return TrainConfig(**(default or {}))
    if not isinstance(config, TrainConfig):
        raise CourseInputError(f"config must be a training.TrainConfig, got {type(config).__name__}; "
                               f"build one with training.TrainConfig(steps=..., batch_size=...)"
                               f"{' (TrainConfig(**your_dict) for a dict)' if isinstance(config, dict) else ''}.")
    return config


def split_batch(batch) -> tuple[torch.Tensor, dict]:
    """Return (x0, model keyword arguments) from a tensor batch or a dict {"x0": ..., "class_labels": ...}."""
    if isinstance(batch, torch.Tensor):
        return batch, {}
    if isinstance(batch, dict) and "x0" in batch:
        return batch["x0"], {k: v for k, v in batch.items() if k != "x0"}
    raise CourseInputError(
        f"a diffusion batch must be a tensor x0 or a dict with key 'x0' (plus model inputs such as "
        f"'class_labels' or 'encoder_hidden_states'), got {type(batch).__name__}."
    )


def drop_condition(cond: dict, null_cond: dict, drop: torch.Tensor) -> dict:
    """Replace the rows of each conditioning input where `drop` is True by its null value.   [CFG, nb 06]

    null_cond maps a model input name to its "no condition" value, e.g. {"class_labels": 10} (the null
    class) or {"encoder_hidden_states": empty_prompt_emb} with shape (1, L, D). Shapes: drop (B,) bool.
    """
    if not isinstance(drop, torch.Tensor) or drop.dtype != torch.bool or drop.ndim != 1:
        raise CourseInputError(f"drop must be a (B,) bool tensor (True: train that example without its condition), "
                               f"got {drop.dtype if isinstance(drop, torch.Tensor) else type(drop).__name__}.")
    out = dict(cond)
    for key, null in null_cond.items():
        if key not in cond:
            raise CourseInputError(f"null_cond names {key!r}, but the batch has no {key!r}; batch keys: {sorted(cond)}.")
        value = cond[key]
        null = torch.as_tensor(null, dtype=value.dtype, device=value.device)
        mask = drop.to(value.device).reshape((-1,) + (1,) * (value.ndim - 1))
        out[key] = torch.where(mask, null.expand_as(value) if null.ndim else null, value)
    return out


def diffusion_loss(model: torch.nn.Module, batch, generator: torch.Generator | None = None, *,
                   alpha_bars: torch.Tensor, prediction_type: str = "epsilon", cond_dropout: float = 0.0,
                   null_cond: dict | None = None, condition_dropout: Callable | None = None) -> torch.Tensor:
    """Return L_simple = E || target - model(sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, t) ||^2.   [DDPM eq. 14, Alg. 1, nb 03]

    t ~ Uniform{0..T-1}, eps ~ N(0, I), both from `generator`. The target is eps ("epsilon", DDPM),
    x0 ("sample") or v = sqrt(ab_t) eps - sqrt(1 - ab_t) x0 ("v_prediction"). With cond_dropout = p,
    each example's condition is replaced by null_cond with probability p (classifier-free guidance
    training, nb 06). condition_dropout(cond, generator) -> cond replaces that rule by another (the
    joint text and image dropout of InstructPix2Pix, nb 09). Bind the keyword arguments with
    functools.partial to get a loss_fn for `train`. Shapes: batch x0 (B, ...); returns a scalar.
    """
    check_choice(prediction_type, posterior.PREDICTION_TYPES, "prediction_type")
    generator = noise_lib.as_generator(generator)
    x0, cond = split_batch(batch)
    check_float_tensor(x0, "x0")
    check_alpha_bars(alpha_bars, "alpha_bars")
    cond_dropout = check_number(cond_dropout, "cond_dropout", low=0, high=1,
                                hint="the share of examples trained without their condition")
    if null_cond is not None and not isinstance(null_cond, dict):
        raise CourseInputError(f"null_cond must be a dict from a model input to its 'no condition' value, e.g. "
                               f"{{'class_labels': 10}}, got {type(null_cond).__name__}.")
    if condition_dropout is not None and not callable(condition_dropout):
        raise CourseInputError("condition_dropout must be a function condition_dropout(cond, generator) -> cond.")
    alpha_bars = alpha_bars.to(x0.device)
    b = x0.shape[0]
    gen_device = generator.device if generator is not None else torch.device("cpu")
    # 1. a timestep and a noise per example
    t = torch.randint(0, len(alpha_bars), (b,), generator=generator, device=gen_device).to(x0.device)
    eps = noise_lib.randn_like(x0, generator)
    # 2. the forward process in one jump, eq. 4
    xt = schedules.q_sample(x0, t, alpha_bars, noise=eps)
    # 3. what the network should output
    if prediction_type == "epsilon":
        target = eps
    elif prediction_type == "sample":
        target = x0
    else:
        target = posterior.v_from_x0_eps(x0, eps, schedules.gather(alpha_bars, t, x0))
    # 4. classifier-free guidance training: drop the condition for a share of the batch
    if cond_dropout > 0:
        if not null_cond:
            raise CourseInputError("cond_dropout > 0 needs null_cond, e.g. {'class_labels': 10}.")
        drop = torch.rand(b, generator=generator, device=gen_device) < cond_dropout
        cond = drop_condition(cond, null_cond, drop)
    if condition_dropout is not None:
        cond = condition_dropout(cond, generator)
    model_output = models.model_output(model, xt, t, **cond)
    return F.mse_loss(model_output.float(), target.float())


def default_loss_fn(num_steps: int = 1000) -> Callable:
    """Return the default loss: eps-MSE under DDPM's linear schedule with `num_steps` steps."""
    return functools.partial(diffusion_loss, alpha_bars=schedules.NoiseSchedule("linear", num_steps).alpha_bars)


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------

def make_ema(model: torch.nn.Module) -> torch.nn.Module:
    """Return a frozen copy of `model` to hold the moving average of its weights."""
    ema = copy.deepcopy(model)
    ema.requires_grad_(False)
    ema.eval()
    return ema


@torch.no_grad()
def update_ema(ema_model: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """Move every EMA weight towards the model's: w_ema <- decay * w_ema + (1 - decay) * w; copy buffers."""
    decay = check_number(decay, "decay", low=0, high=1)
    for w_ema, w in zip(ema_model.parameters(), model.parameters()):
        w_ema.lerp_(w.detach(), 1 - decay)
    for b_ema, b in zip(ema_model.buffers(), model.buffers()):
        b_ema.copy_(b)


def ema_decay_at(step: int, ema_decay: float) -> float:
    """Return the EMA decay used after optimiser step `step`: min(ema_decay, (1 + step) / (10 + step))."""
    step, ema_decay = check_int(step, "step", minimum=0), check_number(ema_decay, "ema_decay", low=0, high=1)
    return min(ema_decay, (1 + step) / (10 + step))


def default_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Return AdamW over the model's trainable parameters (frozen ones, e.g. LiT's image tower, are left out)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise CourseInputError("the model has no trainable parameters (all have requires_grad=False).")
    return torch.optim.AdamW(params, lr=config.lr, betas=config.adam_betas, weight_decay=config.weight_decay)


def _to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _batch_source(data, batch_size: int) -> Callable[[torch.Generator], object]:
    if isinstance(data, (torch.Tensor, dict)):
        return course_data.batch_sampler(data, batch_size)
    if callable(data):
        return data
    if isinstance(data, Iterable):
        state = {"it": iter(data)}

        def next_batch(generator):
            try:
                return next(state["it"])
            except StopIteration:
                state["it"] = iter(data)
                return next(state["it"])

        return next_batch
    raise CourseInputError(
        f"data must be a tensor, a dict of tensors, a callable data(generator) -> batch or an iterable, "
        f"got {type(data).__name__}."
    )


def _progress_enabled(progress: bool | None) -> bool:
    if progress is False:
        return False
    return not os.environ.get("CI")


def train(model: torch.nn.Module, data, loss_fn: Callable | None = None, config: TrainConfig | None = None, *,
          optimizer: torch.optim.Optimizer | None = None, generator: torch.Generator | None = None,
          device: torch.device | str | None = None, resume: TrainState | str | Path | None = None,
          callback: Callable[[TrainState, float], None] | None = None, checkpoint_dir: str | Path | None = None,
          progress: bool | None = True) -> TrainState:
    """Minimise loss_fn(model, batch, generator) for config.steps steps; return the TrainState.   [DDPM Alg. 1, nb 03]

    Each step: draw a batch (from `generator`), loss = loss_fn(model, batch, generator), backward,
    clip the gradient norm, set the learning rate, optimiser step, update the EMA, record the loss.
    loss_fn defaults to the eps-MSE of DDPM's linear 1000-step schedule (`diffusion_loss`).
    optimizer defaults to AdamW on the trainable parameters; generator to
    torch.Generator().manual_seed(config.seed); device to environment.default_device().
    resume: a TrainState, or a folder written by checkpoints.save_training_state: training goes on
    from its step (model, optimiser, EMA and generator restored) up to config.steps.
    callback(state, loss) runs after every step. The progress bar is off with progress=False or
    when the CI environment variable is set.
    """
    if not isinstance(model, torch.nn.Module):
        raise CourseInputError(f"model must be a torch nn.Module to train, got {type(model).__name__}.")
    config = check_config(config)
    loss_fn = loss_fn or default_loss_fn()
    for value, name, form in ((loss_fn, "loss_fn", "loss_fn(model, batch, generator) -> scalar tensor"),
                              (callback, "callback", "callback(state, loss)")):
        if value is not None and not callable(value):
            raise CourseInputError(f"{name} must be a function {form}, got {type(value).__name__}.")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise CourseInputError(f"optimizer must be a torch.optim.Optimizer (or None for AdamW), got {type(optimizer).__name__}.")
    generator = noise_lib.as_generator(generator)
    next_batch = _batch_source(data, config.batch_size)
    device = check_device(device) if device is not None else environment.default_device()
    model.to(device)
    if isinstance(resume, TrainState):
        state = resume
        if state.model is not model:
            raise CourseInputError("resume=state must hold the same model object you pass to train().")
        state.config = config
    else:
        generator = generator if generator is not None else torch.Generator().manual_seed(config.seed)
        optimizer = optimizer or default_optimizer(model, config)
        ema_model = make_ema(model) if config.ema_decay > 0 else None
        state = TrainState(model, ema_model, optimizer, generator, config)
        if resume is not None:
            checkpoints.load_training_state(resume, state)
    if state.ema_model is not None:
        state.ema_model.to(device)
    autocast = (torch.autocast(device_type=device.type, dtype=getattr(torch, config.autocast))
                if config.autocast else None)

    was_training = model.training
    model.train()
    bar = None
    if _progress_enabled(progress) and state.step < config.steps:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=state.step, desc="training")
    start = time.perf_counter()
    wall_before = state.wall_time_s
    try:
        while state.step < config.steps:
            batch = _to_device(next_batch(state.generator), device)
            for group in state.optimizer.param_groups:
                group["lr"] = config.lr_at(state.step)
            if autocast is not None:
                with autocast:
                    loss = loss_fn(model, batch, state.generator)
            else:
                loss = loss_fn(model, batch, state.generator)
            if not torch.isfinite(loss):
                raise CourseInputError(
                    f"the loss became {loss.item()} at step {state.step}: lower the learning rate "
                    f"(lr={config.lr}) or check the data for NaNs."
                )
            state.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            state.optimizer.step()
            if state.ema_model is not None:
                update_ema(state.ema_model, model, ema_decay_at(state.step, config.ema_decay))
            state.step += 1
            value = loss.item()
            state.losses.append(value)
            state.wall_time_s = wall_before + time.perf_counter() - start
            if bar is not None:
                bar.update(1)
                if state.step % 50 == 0 or state.step == config.steps:
                    recent = state.losses[-50:]
                    bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
            if callback is not None:
                callback(state, value)
            if checkpoint_dir is not None and config.checkpoint_every and state.step % config.checkpoint_every == 0:
                checkpoints.save_training_state(state, checkpoint_dir)
            if config.time_limit_s is not None and time.perf_counter() - start > config.time_limit_s:
                break
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    if checkpoint_dir is not None:
        checkpoints.save_training_state(state, checkpoint_dir)
    return state


def smooth(losses: list[float], window: int = 100) -> list[float]:
    """Return the running mean of a loss history over `window` steps (for plotting a noisy curve)."""
    window = check_int(window, "window", minimum=1)
    out, total = [], 0.0
    for i, value in enumerate(losses):
        total += value
        if i >= window:
            total -= losses[i - window]
        out.append(total / min(i + 1, window))
    return out
