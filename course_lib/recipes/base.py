"""What a recipe is: how one shipped checkpoint is trained, measured, described and saved.   [notebook 03]

A family of recipes (one file of this package) subclasses one of these and overrides a method or
two, as diffusers' schedulers or prompt-to-prompt's controllers do:

    Recipe            train(config) -> Trained, evaluate(model) -> figures, to_dict(), save(...)
    LoopRecipe        trained by training.train (the course's one loop) from build_model(),
                      build_data() and loss_fn(); train() is that, resumable from a state folder
    DiffusionRecipe   a LoopRecipe whose loss is training.diffusion_loss on its noise schedule
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import torch

from course_lib import checkpoints, models, schedules, training


@dataclass(frozen=True)
class Trained:
    """What a recipe's train() gives: the model that ships, the run's TrainState, and what the run adds to the manifest."""

    model: object  # the weights to measure and ship (the EMA weights when the run keeps an EMA)
    state: training.TrainState
    record: dict = field(default_factory=dict)  # merged into the manifest's "recipe" entry


def model_config(model) -> dict:
    """Return a model's config as JSON-ready fields (non-JSON values as str, private keys dropped), {} without one."""
    if not hasattr(model, "config"):
        return {}
    plain = (int, float, str, bool, list, tuple, dict, type(None))
    return {k: (v if isinstance(v, plain) else str(v)) for k, v in dict(model.config).items() if not k.startswith("_")}


@dataclass(frozen=True)
class Recipe:
    """A shipped checkpoint's recipe: its name, what it is, its TrainConfig and data seed, and how to train it.

    Subclasses implement train() and evaluate(); to_dict() is what the manifest records about the
    recipe besides the TrainConfig (tests check the shipped manifest still says it); save() writes
    the folder and its manifest.
    """

    name: str
    description: str
    config: training.TrainConfig
    data_seed: int

    def train(self, config: training.TrainConfig, *, device: torch.device, state_dir: str | Path | None = None,
              progress: bool | None = True) -> Trained:
        """Train from scratch with `config` (the recipe's, or a shortened copy), resuming from state_dir if it holds a state."""
        raise NotImplementedError

    def evaluate(self, model) -> dict:
        """Return the figures the manifest's "metrics" records about the trained model."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        """Return what the manifest records about the recipe besides the TrainConfig."""
        return {"description": self.description}

    def save(self, trained: Trained, folder: str | Path, **manifest) -> dict:
        """Write the model and its manifest to `folder` (checkpoints.save_pretrained); return the manifest."""
        return checkpoints.save_pretrained(trained.model, folder, **manifest)


@dataclass(frozen=True)
class LoopRecipe(Recipe):
    """A recipe trained by training.train from build_model(), build_data() and loss_fn(): the course's one loop."""

    def build_model(self) -> torch.nn.Module:
        """Return the fresh (seeded) model to train."""
        raise NotImplementedError

    def build_data(self):
        """Return the training data: a tensor, a dict of tensors, or data(generator) -> batch."""
        raise NotImplementedError

    def loss_fn(self):
        """Return loss_fn(model, batch, generator) -> scalar, as training.train calls it."""
        raise NotImplementedError

    def run_record(self, model, state: training.TrainState) -> dict:
        """Return what a finished run adds to the manifest: which weights ship, and the model's config."""
        return {"weights": "EMA" if state.ema_model is not None else "raw", "model_config": model_config(model)}

    def train(self, config, *, device, state_dir=None, progress=True) -> Trained:
        return self.fit(self.build_model(), config, device=device, state_dir=state_dir, progress=progress)

    def fit(self, model: torch.nn.Module, config: training.TrainConfig, *, device: torch.device,
            state_dir: str | Path | None = None, progress: bool | None = True) -> Trained:
        """Train `model` on build_data() with loss_fn() by training.train; save the state in (and resume from) state_dir."""
        resume = state_dir if state_dir is not None and checkpoints.has_training_state(state_dir) else None
        state = training.train(model, self.build_data(), self.loss_fn(), config, device=device, resume=resume,
                               checkpoint_dir=state_dir, progress=progress)
        final = state.sampling_model
        return Trained(final, state, self.run_record(final, state))


@dataclass(frozen=True)
class DiffusionRecipe(LoopRecipe):
    """A recipe trained with training.diffusion_loss, the noise-prediction MSE, on its noise schedule.   [DDPM eq. 14, nb 03]

    loss_options() gives diffusion_loss's conditioning keywords (what is dropped, and to what);
    loss_record() says the same in the manifest's words.
    """

    schedule: schedules.NoiseSchedule = field(default_factory=lambda: models.SCHEDULE)
    prediction_type: str = "epsilon"

    def loss_options(self) -> dict:
        """Return the keywords of training.diffusion_loss besides alpha_bars and prediction_type (none by default)."""
        return {}

    def loss_record(self) -> dict:
        """Return loss_options() as the manifest records them (JSON-ready)."""
        return {}

    def loss_fn(self):
        return functools.partial(training.diffusion_loss, alpha_bars=self.schedule.alpha_bars,
                                 prediction_type=self.prediction_type, **self.loss_options())

    def to_dict(self) -> dict:
        return {**super().to_dict(), "schedule": self.schedule.to_config(),
                "loss": {"fn": "course_lib.training.diffusion_loss", "prediction_type": self.prediction_type,
                         **self.loss_record()}}
