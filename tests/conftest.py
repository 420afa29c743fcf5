"""Shared fixtures for the unit tests: a deterministic fake model, diffusers schedulers that share
our alpha_bars table, and a record of the worst differences seen, printed at the end of the run."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
import torch

# Worst absolute difference seen per oracle, filled by the tests, printed by pytest_terminal_summary.
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

    A seeded random 2-layer tanh MLP over the channel axis (axis 1) with sin/cos features of t,
    plus a small sin(x) term, so outputs depend on x and t nonlinearly and reach about +-2
    (clip_sample then clamps some x0_hat). Works for (B, C, H, W) and (B, D).
    """

    def __init__(self, channels: int, seed: int = 0, hidden: int = 16, num_train_steps: int = 1000):
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.randn(channels + 2, hidden, generator=g) / math.sqrt(channels + 2)
        self.b1 = 0.3 * torch.randn(hidden, generator=g)
        self.w2 = 1.5 * torch.randn(hidden, channels, generator=g) / math.sqrt(hidden)
        self.num_train_steps = num_train_steps

    def __call__(self, x: torch.Tensor, t) -> torch.Tensor:
        h = x.movedim(1, -1)  # (..., C)
        u = torch.full(h.shape[:-1] + (1,), float(t) / self.num_train_steps, dtype=x.dtype)
        feats = torch.cat([h, torch.sin(3 * u), torch.cos(3 * u)], dim=-1)
        out = torch.tanh(feats @ self.w1 + self.b1) @ self.w2 + 0.1 * torch.sin(2 * h)
        return out.movedim(-1, 1).contiguous()


@pytest.fixture(scope="session")
def worst():
    """The function record(name, value) that keeps the worst difference per oracle for the summary."""
    return record


SHAPES = {"image": (3, 3, 8, 8), "2d": (48, 2)}


@pytest.fixture(scope="session")
def fake_models():
    """One FakeModel per data kind: 'image' (B, C, H, W) and '2d' (B, 2)."""
    return {kind: FakeModel(shape[1], seed=7) for kind, shape in SHAPES.items()}


def diffusers_scheduler(kind: str, alpha_bars: torch.Tensor, **config):
    """Return a diffusers DDPM/DDIM scheduler whose alpha_bars table is ours (see test_samplers)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    cls = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}[kind]
    sched = cls(**config)
    sched.alphas_cumprod = alpha_bars.clone()
    if kind == "ddim":
        sched.final_alpha_cumprod = torch.tensor(1.0) if config.get("set_alpha_to_one", True) else alpha_bars[0].clone()
    return sched
