"""Shared fixtures for the unit tests: a deterministic fake model, diffusers schedulers that share
our alpha_bars table, and a record of the worst differences seen, printed at the end of the run."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
import torch

# Worst difference (or ratio, as the name says) per oracle: filled by the tests, printed at the end of the
# run by pytest_terminal_summary. Per process: under pytest-xdist each worker keeps its own.
WORST = defaultdict(float)


def record(name: str, value: float) -> None:
    """Remember the worst (largest) difference seen for `name`."""
    WORST[name] = max(WORST[name], float(value))


def pytest_terminal_summary(terminalreporter):
    if WORST:
        terminalreporter.section("worst differences against the oracles")
        for name in sorted(WORST):
            terminalreporter.write_line(f"{name:<60s} {WORST[name]:.3e}")


class FakeModel:
    """A fixed smooth nonlinear function of (x, t), standing in for a trained network.

    At its core a seeded random 2-layer tanh MLP over the channel axis (axis 1) with sin/cos
    features of t guesses the clean data, x0_guess(x, t) in about (-2, 2), so clip_sample clamps
    some of it. The model returns that guess as the requested prediction type, converted with the
    explicit formulas eps = (x - sqrt(ab) x0) / sqrt(1 - ab), v = sqrt(ab) eps - sqrt(1 - ab) x0.
    Predicting through a bounded x0 keeps the samples O(1) for every prediction type, so an
    absolute tolerance of 1e-5 means ~1e-5 relative (a raw MLP read as eps drives unclipped samples
    to |x| ~ 600, where float32's spacing alone is 6e-5). Works for (B, C, H, W) and (B, D).
    """

    def __init__(self, channels: int, prediction_type: str = "sample", alpha_bars: torch.Tensor | None = None,
                 seed: int = 7, hidden: int = 16):
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.randn(channels + 2, hidden, generator=g) / math.sqrt(channels + 2)
        self.b1 = 0.3 * torch.randn(hidden, generator=g)
        self.w2 = 1.5 * torch.randn(hidden, channels, generator=g) / math.sqrt(hidden)
        self.prediction_type = prediction_type
        self.alpha_bars = alpha_bars
        if prediction_type != "sample" and alpha_bars is None:
            raise ValueError("eps and v outputs need the alpha_bars table")

    def x0_guess(self, x: torch.Tensor, t) -> torch.Tensor:
        h = x.movedim(1, -1)  # (..., C)
        u = torch.full(h.shape[:-1] + (1,), float(t) / 1000, dtype=x.dtype)
        feats = torch.cat([h, torch.sin(3 * u), torch.cos(3 * u)], dim=-1)
        out = torch.tanh(feats @ self.w1 + self.b1) @ self.w2 + 0.1 * torch.sin(2 * h)
        return out.movedim(-1, 1).contiguous()

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        x0 = self.x0_guess(x, t)
        if self.prediction_type == "sample":
            return x0
        ab = self.alpha_bars[int(t)]
        eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        return eps if self.prediction_type == "epsilon" else ab.sqrt() * eps - (1 - ab).sqrt() * x0


@pytest.fixture(scope="module")
def one_thread():
    """Run a module on one torch thread: its tensors are small and, on a shared 2-core machine,
    two threads spin against other processes (measured: 1.2 s vs up to 23 s for the same test)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def worst():
    """The function record(name, value) that keeps the worst difference per oracle for the summary."""
    return record


def _loop_vs_pipeline(parts, pipe, prompts, *, guidance_scale, num_steps, sampler, seed):
    """Return the course loop's latents and their largest difference from the pipeline's, relative to the pipeline's
    largest value (Euler and Heun step in x_bar = z sqrt(sigma^2 + 1), many times z at few steps)."""
    from course_lib import text2image

    z = text2image.generate_latents(parts, prompts, guidance_scale=guidance_scale, num_steps=num_steps,
                                    sampler=sampler, generator=torch.Generator().manual_seed(seed))
    z_pipe = pipe(prompts, num_inference_steps=num_steps, guidance_scale=guidance_scale, output_type="latent",
                  generator=torch.Generator().manual_seed(seed)).images
    return z, float((z - z_pipe).abs().max()) / max(1.0, float(z_pipe.abs().max()))


@pytest.fixture(scope="session")
def loop_vs_pipeline():
    """The function (parts, pipe, prompts, guidance_scale=, num_steps=, sampler=, seed=) -> (latents, relative gap)."""
    return _loop_vs_pipeline


SHAPES = {"image": (3, 3, 8, 8), "2d": (48, 2)}


def fake_model(kind: str, prediction_type: str, alpha_bars: torch.Tensor) -> FakeModel:
    """The FakeModel for data of `kind`: 'image' (B, C, H, W) or '2d' (B, 2)."""
    return FakeModel(SHAPES[kind][1], prediction_type, alpha_bars)


def diffusers_scheduler(kind: str, alpha_bars: torch.Tensor, **config):
    """Return a diffusers DDPM/DDIM scheduler whose alpha_bars table is ours (see test_samplers)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    cls = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}[kind]
    sched = cls(**config)
    sched.alphas_cumprod = alpha_bars.clone()
    if kind == "ddim":
        sched.final_alpha_cumprod = torch.tensor(1.0) if config.get("set_alpha_to_one", True) else alpha_bars[0].clone()
    return sched
