"""Checkpoints anyone can verify and rebuild: safetensors weights, a JSON manifest, SHA-256 hashes.   [notebook 03]

A shipped checkpoint is a folder data/NAME/ holding what the model's save_pretrained writes
(config.json and *.safetensors; subfolders for a whole pipeline) and a manifest.json recording the
class, the training config, the command that reproduces it, the data seed, the steps, the wall
time, the metrics at save time and the SHA-256 of every file. `load` checks every hash before it
builds the model and, when a file is missing or differs, says how to get it back:

    python -m course_lib.recipes NAME      (retrain from scratch)
    git checkout data/NAME                 (restore the shipped files)

A training state (to resume a run) is another folder: the model, EMA and optimiser tensors in
safetensors, the step, losses, config and generator state in JSON/safetensors. No pickles anywhere:
torch.load is never used.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from course_lib import environment
from course_lib.validation import CourseInputError

MANIFEST = "manifest.json"
# Modules a manifest's "class" may name; from_pretrained is looked up on the class.
ALLOWED_MODULES = ("course_lib.", "diffusers", "transformers")


def sha256_file(path: str | Path) -> str:
    """Return the SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_dir(name_or_path: str | Path) -> Path:
    """Return data/NAME for a checkpoint name, or the path itself when given a folder path."""
    path = Path(name_or_path)
    if path.is_absolute() or len(path.parts) > 1:
        return path
    return environment.DATA_DIR / str(name_or_path)


def _fix(name: str) -> str:
    return (f"Rebuild it with `python -m course_lib.recipes {name}` (retrains from scratch), "
            f"or restore the shipped files with `git checkout data/{name}`.")


def _class_path(obj) -> str:
    """Return e.g. "diffusers.UNet2DModel" or "course_lib.models.TimeMLP": where `load` finds the class."""
    module = type(obj).__module__
    if module.startswith(("diffusers.", "transformers.")):
        module = module.split(".")[0]  # both libraries export their model classes at the top level
    return f"{module}.{type(obj).__name__}"


def _weight_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def save_pretrained(obj, name_or_path: str | Path, *, name: str | None = None, command: str | None = None,
                    train_config: dict | None = None, recipe: dict | None = None, data_seed: int | None = None,
                    steps: int | None = None, wall_time_s: float | None = None, metrics: dict | None = None,
                    notes: str = "") -> dict:
    """Save a model (anything with save_pretrained) to a folder with a manifest; return the manifest.

    The folder is emptied first, so that no stale file survives. Weights are written as safetensors.
    """
    folder = checkpoint_dir(name_or_path)
    name = name or folder.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if not hasattr(obj, "save_pretrained"):
        raise CourseInputError(f"{type(obj).__name__} has no save_pretrained; save diffusers/transformers models.")
    obj.save_pretrained(folder, safe_serialization=True)
    num_parameters = int(sum(p.numel() for p in obj.parameters())) if hasattr(obj, "parameters") else None
    return write_manifest(folder, class_path=_class_path(obj), name=name, command=command, train_config=train_config,
                          recipe=recipe, data_seed=data_seed, steps=steps, wall_time_s=wall_time_s, metrics=metrics,
                          num_parameters=num_parameters, notes=notes)


def write_manifest(folder: str | Path, *, class_path: str, name: str | None = None, command: str | None = None,
                   train_config: dict | None = None, recipe: dict | None = None, data_seed: int | None = None,
                   steps: int | None = None, wall_time_s: float | None = None, metrics: dict | None = None,
                   num_parameters: int | None = None, notes: str = "") -> dict:
    """Hash every file of a folder already written (e.g. by a pipeline's save_pretrained) into its manifest.json; return it.

    The manifest has save_pretrained's fields; class_path names the class `load` would call
    from_pretrained on (e.g. "diffusers.StableDiffusionPipeline"). Refuses pickle files.
    """
    folder = checkpoint_dir(folder)
    name = name or folder.name
    files = _weight_files(folder)
    if any(f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt")) for f in files):
        raise CourseInputError(f"pickle files were written to {folder}: {files}; only safetensors are allowed.")
    manifest = {
        "name": name,
        "class": class_path,
        "command": command or f"python -m course_lib.recipes {name}",
        "data_seed": data_seed,
        "steps": steps,
        "wall_time_s": None if wall_time_s is None else round(float(wall_time_s), 1),
        "metrics": metrics or {},
        "train_config": train_config or {},
        "recipe": recipe or {},
        "num_parameters": num_parameters,
        "versions": environment.versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "notes": notes,
        "files": {f: {"sha256": sha256_file(folder / f), "bytes": (folder / f).stat().st_size} for f in files},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(name_or_path: str | Path) -> dict:
    """Return a checkpoint's manifest, or raise saying how to rebuild the checkpoint."""
    folder = checkpoint_dir(name_or_path)
    path = folder / MANIFEST
    if not path.is_file():
        raise CourseInputError(f"no checkpoint manifest at {path}. " + _fix(folder.name))
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CourseInputError(f"{path} is not valid JSON ({exc}). " + _fix(folder.name)) from None


def verify(name_or_path: str | Path) -> dict:
    """Check that every file the manifest lists exists with its SHA-256; return the manifest, or raise saying what to do."""
    folder = checkpoint_dir(name_or_path)
    manifest = read_manifest(folder)
    name = manifest.get("name", folder.name)
    for rel, info in manifest["files"].items():
        path = folder / rel
        if not path.is_file():
            raise CourseInputError(f"checkpoint file {path} is missing. " + _fix(name))
        got = sha256_file(path)
        if got != info["sha256"]:
            raise CourseInputError(
                f"checkpoint file {path} does not match its manifest (SHA-256 {got[:12]}..., "
                f"expected {info['sha256'][:12]}...): it was changed or only partly downloaded "
                f"(a Git LFS pointer?). " + _fix(name)
            )
    return manifest


def _resolve_class(class_path: str):
    if not class_path.startswith(ALLOWED_MODULES):
        raise CourseInputError(f"manifest class {class_path!r} is not from course_lib, diffusers or transformers.")
    module_name, _, cls_name = class_path.rpartition(".")
    return getattr(importlib.import_module(module_name), cls_name)


def load(name_or_path: str | Path, device: torch.device | str | None = None):
    """Verify a checkpoint's hashes, then build its model with from_pretrained; return it in eval mode on `device`.

    device defaults to environment.default_device().
    """
    folder = checkpoint_dir(name_or_path)
    manifest = verify(folder)
    cls = _resolve_class(manifest["class"])
    kwargs = {}
    if manifest["class"].startswith(("diffusers.", "course_lib.")):
        kwargs["low_cpu_mem_usage"] = False  # the default needs `accelerate`, and says so on every load
    model = cls.from_pretrained(folder, **kwargs)
    device = torch.device(device) if device is not None else environment.default_device()
    if hasattr(model, "to"):
        model = model.to(device)
    if hasattr(model, "eval"):
        model.eval()
    return model


# ----------------------------------------------------------------------------------------------
# Training state: resume a run exactly
# ----------------------------------------------------------------------------------------------

def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_state_dict(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for key, value in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_training_state(state, folder: str | Path) -> None:
    """Write what `training.train(..., resume=folder)` needs: model, EMA, optimiser, generator, step, losses."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(state.model, str(folder / "model.safetensors"))
    if state.ema_model is not None:
        save_model(state.ema_model, str(folder / "ema.safetensors"))
    opt_tensors, opt_meta = _optimizer_tensors(state.optimizer)
    opt_tensors["generator_state"] = state.generator.get_state()
    save_file(opt_tensors, str(folder / "optimizer.safetensors"))
    meta = {
        "step": state.step,
        "wall_time_s": state.wall_time_s,
        "config": state.config.to_dict(),
        "optimizer": opt_meta,
        "losses": state.losses,
        "has_ema": state.ema_model is not None,
    }
    (folder / "trainer_state.json").write_text(json.dumps(meta))


def load_training_state(folder: str | Path, state) -> None:
    """Fill a fresh TrainState (same model architecture) from a folder written by save_training_state."""
    folder = Path(folder)
    meta_path = folder / "trainer_state.json"
    if not meta_path.is_file():
        raise CourseInputError(f"no training state at {folder} (trainer_state.json missing); "
                               f"save one with checkpoints.save_training_state(state, folder).")
    meta = json.loads(meta_path.read_text())
    load_model(state.model, str(folder / "model.safetensors"))
    if meta["has_ema"]:
        if state.ema_model is None:
            raise CourseInputError("the saved run has an EMA but the config has ema_decay=0; use the saved config.")
        load_model(state.ema_model, str(folder / "ema.safetensors"))
    tensors = load_file(str(folder / "optimizer.safetensors"))
    state.generator.set_state(tensors.pop("generator_state"))
    state.optimizer.load_state_dict(_optimizer_state_dict(tensors, meta["optimizer"]))
    state.step = meta["step"]
    state.losses = list(meta["losses"])
    state.wall_time_s = meta["wall_time_s"]
