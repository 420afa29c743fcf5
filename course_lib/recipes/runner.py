"""Run a recipe: train from scratch, measure, save with a manifest; and the command line around it.   [notebook 03]"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from course_lib import checkpoints, environment, models
from course_lib.recipes.base import Recipe
from course_lib.recipes.registry import RECIPES, get
from course_lib.validation import CourseInputError, check_int


def _check_out(name: str, out, steps) -> Path:
    """Return the folder a run writes, refusing to let a shortened run (or another recipe) overwrite a shipped checkpoint."""
    folder = checkpoints.checkpoint_dir(out if out is not None else name)
    shipped = {(environment.DATA_DIR / other).resolve(): other for other in RECIPES}
    owner = shipped.get(folder.resolve())
    if owner is not None and owner != name:
        raise CourseInputError(f"out={str(out)!r} is data/{owner}, the shipped checkpoint of recipe {owner!r}; "
                               f"write recipe {name!r} somewhere else, e.g. out='/tmp/{name}'.")
    if owner == name and steps is not None:
        raise CourseInputError(f"a shortened run (steps={steps}) would overwrite the shipped data/{name}; "
                               f"pass out= a folder of your own, e.g. out='/tmp/{name}_short'.")
    return folder


def run(recipe: str | Recipe, *, steps: int | None = None, out: str | Path | None = None, device=None,
        state_dir: str | Path | None = None, progress: bool | None = True, evaluate: bool = True) -> dict:
    """Train a recipe from scratch (or resume from state_dir), measure it, save it with a manifest; return the manifest.

    recipe: a name (see --list) or a Recipe object (e.g. dataclasses.replace(get(name), ...), written
    to `out`). steps overrides the recipe's step count (a shortened run: then `out` must be a folder
    other than data/NAME). state_dir: where the training state is saved every config.checkpoint_every
    steps, and resumed from if it already holds one. device: None for environment.default_device().
    The global torch RNG is seeded with the config's seed for the run (dropout layers draw from it),
    so that a run is repeatable bit for bit with the same device and thread count.
    """
    recipe = recipe if isinstance(recipe, Recipe) else get(recipe)
    name = recipe.name
    if steps is not None:
        steps = check_int(steps, "steps", minimum=1, hint="optimiser steps of a shortened run")
    folder = _check_out(name, out, steps)
    if state_dir is not None and not isinstance(state_dir, (str, Path)):
        raise CourseInputError(f"state_dir must be a folder path (str or Path) or None, got {type(state_dir).__name__}.")
    device = checkpoints.target_device(device)
    config = recipe.config if steps is None else dataclasses.replace(recipe.config, steps=steps)
    started = time.perf_counter()
    with models.seeded(config.seed):
        trained = recipe.train(config, device=device, state_dir=state_dir, progress=progress)
        figures = recipe.evaluate(trained.model) if evaluate else {}
    losses = trained.state.losses[-100:]
    figures["final_loss_mean_last_100"] = round(sum(losses) / max(1, len(losses)), 5)
    command = (f"python -m course_lib.recipes {name}" + (f" --steps {steps}" if steps is not None else "")
               + f" --threads {torch.get_num_threads()}")  # bit-exact only with the same count: always say it
    record = {**recipe.to_dict(), "device": str(device), "torch_threads": torch.get_num_threads(), **trained.record}
    manifest = recipe.save(trained, folder, name=name, command=command, train_config=config.to_dict(), recipe=record,
                           data_seed=recipe.data_seed, steps=trained.state.step, wall_time_s=trained.state.wall_time_s,
                           metrics=figures)
    manifest["total_seconds"] = round(time.perf_counter() - started, 1)
    return manifest


def main(argv: list[str] | None = None) -> None:
    """python -m course_lib.recipes [--list | NAME [--steps N --out DIR --device D --state-dir DIR --threads N]]."""
    parser = argparse.ArgumentParser(prog="python -m course_lib.recipes",
                                     description="Retrain a shipped checkpoint from scratch and rewrite data/NAME/.")
    parser.add_argument("name", nargs="?", help="recipe name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the recipes")
    parser.add_argument("--steps", type=int, default=None, help="override the number of steps (a shortened run; needs --out)")
    parser.add_argument("--out", default=None, help="folder to write instead of data/NAME")
    parser.add_argument("--device", default=None, help="device (default: environment.default_device())")
    parser.add_argument("--state-dir", default=None, help="save the training state here, and resume from it if present")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice); results are bit-exact only with the same count")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.list or not args.name:
        for recipe in RECIPES.values():
            print(f"{recipe.name:16s} {recipe.config.steps:6d} steps  {recipe.description}")
        return
    try:
        if args.threads is not None:
            torch.set_num_threads(check_int(args.threads, "--threads", minimum=1))
        manifest = run(args.name, steps=args.steps, out=args.out, device=args.device, state_dir=args.state_dir,
                       progress=not args.no_progress)
    except CourseInputError as exc:
        parser.error(str(exc))
    folder = checkpoints.checkpoint_dir(args.out if args.out else args.name)
    print(f"wrote {folder}: {manifest['steps']} steps, {manifest['wall_time_s']} s training, "
          f"{manifest['total_seconds']} s in all")
    for key, value in manifest["metrics"].items():
        print(f"  {key}: {value}")
    for rel, info in manifest["files"].items():
        print(f"  {rel}: {info['bytes']} bytes, sha256 {info['sha256']}")
