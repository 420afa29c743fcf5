"""Checkpoints anyone can verify and rebuild: safetensors weights, a JSON manifest, SHA-256 hashes.   [notebook 03]

A shipped checkpoint is a folder data/NAME/ holding what the model's save_pretrained writes
(config.json and *.safetensors; subfolders for a whole pipeline) and a manifest.json recording the
class, the training config, the command that reproduces it, the data seed, the steps, the wall
time, the metrics at save time and the SHA-256 of every file. `load` checks every hash before it
builds the model and, when a file is missing or differs, says how to get it back:

    python -m course_lib.recipes NAME      (retrain from scratch)
    git checkout data/NAME                 (restore the shipped files)

A checkpoint is a name or a folder: a bare name ("clip") means data/clip; anything with a folder in
it ("./clip", "../runs/clip", "/tmp/clip", "runs/clip") or a Path object means that path.

The manifest is the door: `verify` refuses a folder holding any file its manifest does not list
(diffusers and transformers would otherwise load an unlisted pytorch_model.bin, a pickle, as a
fallback), refuses pickle and code files even when listed, and refuses a manifest without a files
table; `load` builds only classes of course_lib, diffusers or transformers (by package, so
"diffusers_evil" is not "diffusers").

A training state (to resume a run) is another folder: the model, EMA and optimiser tensors in
safetensors, the step, losses, config and generator state in JSON/safetensors. No pickles anywhere:
torch.load is never used.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from course_lib import environment
from course_lib.validation import CourseInputError, check_device, check_int, check_number

MANIFEST = "manifest.json"
TRAINER_STATE = "trainer_state.json"  # the JSON half of a training state folder
# Packages a manifest's "class" may come from (the package itself or a module inside it); from_pretrained
# is looked up on the class.
ALLOWED_MODULES = ("course_lib", "diffusers", "transformers")
# Files a checkpoint never holds, listed in its manifest or not: pickles (torch.load runs code) and code.
FORBIDDEN_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".npy", ".npz", ".h5", ".msgpack",
                      ".py", ".pyc", ".so", ".sh")
# Operating-system litter that may sit in any folder; never loaded by anything, so verify ignores it.
IGNORED_FILES = (".DS_Store", "Thumbs.db", "desktop.ini")


def sha256_file(path: str | Path) -> str:
    """Return the SHA-256 hex digest of a file's bytes."""
    if not isinstance(path, (str, Path)) or not Path(path).is_file():
        raise CourseInputError(f"sha256_file needs the path of an existing file, got {path!r}.")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_bare_name(name_or_path: str) -> bool:
    return not any(sep in name_or_path for sep in ("/", "\\")) and name_or_path not in (".", "..") \
        and not Path(name_or_path).is_absolute()


def checkpoint_dir(name_or_path: str | Path) -> Path:
    """Return the folder of a checkpoint: data/NAME for a bare name, else the path as given.

    A bare name is a str without a folder separator ("clip"): data/clip. A str with one ("./clip",
    "../runs/clip", "runs/clip", "/tmp/clip") or a pathlib.Path is that path, relative to the
    working directory unless absolute.
    """
    if isinstance(name_or_path, Path):
        return name_or_path
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise CourseInputError(f"a checkpoint is a name (e.g. 'clip', meaning data/clip) or a folder path "
                               f"(e.g. './my_run' or a pathlib.Path), got {name_or_path!r}.")
    if _is_bare_name(name_or_path):
        return environment.DATA_DIR / name_or_path
    return Path(name_or_path)


def _where(name_or_path, folder: Path) -> str:
    """Say which folder was looked at, and how the other reading is asked for."""
    if isinstance(name_or_path, str) and _is_bare_name(name_or_path):
        hint = f" (the bare name {name_or_path!r} means data/{name_or_path}"
        if Path(name_or_path).is_dir():
            hint += f"; for the folder {name_or_path!r} here, pass './{name_or_path}'"
        return f"{folder}{hint})"
    return str(folder)


def has_training_state(folder: str | Path) -> bool:
    """Return True when `folder` holds a training state written by save_training_state (its trainer_state.json)."""
    return (Path(folder) / TRAINER_STATE).is_file()


def target_device(device=None) -> torch.device:
    """Return the device to put a model on: environment.default_device() for None, else validation.check_device(device).

    Refuses an unknown device string, and "cuda" / "mps" where there is none, before anything is loaded.
    """
    return environment.default_device() if device is None else check_device(device)


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
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != MANIFEST and p.name not in IGNORED_FILES)


def _forbidden(files) -> list[str]:
    return [f for f in files if f.lower().endswith(FORBIDDEN_SUFFIXES)]


def fresh_folder(name_or_path: str | Path) -> Path:
    """Return the checkpoint folder, emptied and ready to write: new, empty, or an earlier checkpoint (it is replaced).

    A folder that holds files but no manifest.json is not a checkpoint: it is refused, never deleted.
    """
    folder = checkpoint_dir(name_or_path)
    if folder.exists() and not folder.is_dir():
        raise CourseInputError(f"{folder} is a file, not a folder; choose a folder for the checkpoint.")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MANIFEST).is_file():
        raise CourseInputError(f"{folder} holds files but no {MANIFEST}: it is not a checkpoint, and saving would "
                               f"delete it. Choose a new or empty folder.")
    if folder.exists():
        shutil.rmtree(folder)  # no stale file survives
    folder.mkdir(parents=True)
    return folder


def halve_exact_files(folder: str | Path) -> list[str]:
    """Store in float16 every safetensors file of a folder whose float32 values float16 holds exactly; return their paths."""
    folder = Path(folder)
    return [str(f.relative_to(folder)) for f in sorted(folder.rglob("*.safetensors")) if halve_if_exact(f)]


def halve_if_exact(path: str | Path) -> bool:
    """Store a safetensors file's float32 tensors as float16 when every value survives the round trip; return whether it did.

    data/vae and data/vae16 ship in float16, so their weights halve exactly inside a pipeline folder;
    from_pretrained loads them back as float32 (its default dtype), the same numbers. Files with any value float16 cannot hold stay as they are.
    """
    from safetensors import safe_open

    tensors = load_file(str(path))
    floats = {k: v for k, v in tensors.items() if v.dtype == torch.float32}
    if not floats or any(not torch.equal(v.half().float(), v) for v in floats.values()):
        return False
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    save_file({k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}, str(path), metadata=metadata)
    return True


def save_pretrained(obj, name_or_path: str | Path, *, name: str | None = None, command: str | None = None,
                    train_config: dict | None = None, recipe: dict | None = None, data_seed: int | None = None,
                    steps: int | None = None, wall_time_s: float | None = None, metrics: dict | None = None,
                    notes: str = "") -> dict:
    """Save a model (anything with save_pretrained) to a folder with a manifest; return the manifest.

    The folder is emptied first, so that no stale file survives: it must be new, empty, or an earlier
    checkpoint (a folder with a manifest.json); any other folder is refused, never deleted. Weights
    are written as safetensors. Every field is checked before anything is written.
    """
    if not hasattr(obj, "save_pretrained"):
        raise CourseInputError(f"{type(obj).__name__} has no save_pretrained; save diffusers/transformers models.")
    folder = checkpoint_dir(name_or_path)
    fields = _manifest_fields(folder, name=name, command=command, train_config=train_config, recipe=recipe,
                              data_seed=data_seed, steps=steps, wall_time_s=wall_time_s, metrics=metrics,
                              num_parameters=None, notes=notes)
    fresh_folder(folder)
    obj.save_pretrained(folder, safe_serialization=True)
    if hasattr(obj, "parameters"):
        fields["num_parameters"] = int(sum(p.numel() for p in obj.parameters()))
    return _write_manifest(folder, _class_path(obj), fields)


def write_manifest(folder: str | Path, *, class_path: str, name: str | None = None, command: str | None = None,
                   train_config: dict | None = None, recipe: dict | None = None, data_seed: int | None = None,
                   steps: int | None = None, wall_time_s: float | None = None, metrics: dict | None = None,
                   num_parameters: int | None = None, notes: str = "") -> dict:
    """Hash every file of a folder already written (e.g. by a pipeline's save_pretrained) into its manifest.json; return it.

    The manifest has save_pretrained's fields; class_path names the class `load` would call
    from_pretrained on (e.g. "diffusers.StableDiffusionPipeline"). Refuses pickle and code files.
    """
    folder = checkpoint_dir(folder)
    if not folder.is_dir():
        raise CourseInputError(f"no folder {folder} to write a manifest for; save the model there first.")
    _resolve_class(class_path)  # a manifest names a class `load` can build
    fields = _manifest_fields(folder, name=name, command=command, train_config=train_config, recipe=recipe,
                              data_seed=data_seed, steps=steps, wall_time_s=wall_time_s, metrics=metrics,
                              num_parameters=num_parameters, notes=notes)
    return _write_manifest(folder, class_path, fields)


def _manifest_fields(folder: Path, *, name, command, train_config, recipe, data_seed, steps, wall_time_s, metrics,
                     num_parameters, notes) -> dict:
    """Return the manifest's own fields, checked and as JSON values (numpy scalars become numbers), or raise."""
    if name is not None and (not isinstance(name, str) or not name):
        raise CourseInputError(f"name must be a non-empty str or None, got {name!r}.")
    for key, value in (("command", command), ("notes", notes)):
        if value is not None and not isinstance(value, str):
            raise CourseInputError(f"{key} must be a str, got {type(value).__name__}.")
    for key, value in (("metrics", metrics), ("train_config", train_config), ("recipe", recipe)):
        if value is not None and not isinstance(value, dict):
            raise CourseInputError(f"{key} must be a dict or None, got {type(value).__name__}.")
    counts = {key: None if value is None else check_int(value, key, minimum=0)
              for key, value in (("data_seed", data_seed), ("steps", steps), ("num_parameters", num_parameters))}
    if wall_time_s is not None:
        wall_time_s = round(check_number(wall_time_s, "wall_time_s", low=0, hint="seconds of training"), 1)
    name = name if name is not None else folder.name
    fields = {"name": name, "command": command or f"python -m course_lib.recipes {name}",
              "data_seed": counts["data_seed"], "steps": counts["steps"], "wall_time_s": wall_time_s,
              "metrics": metrics or {}, "train_config": train_config or {}, "recipe": recipe or {},
              "num_parameters": counts["num_parameters"], "notes": notes or ""}
    try:
        return json.loads(json.dumps(fields, default=_plain))
    except (TypeError, ValueError) as exc:
        raise CourseInputError(f"the manifest's fields must be JSON values (numbers, str, lists, dicts): {exc}.") from None


def _write_manifest(folder: Path, class_path: str, fields: dict) -> dict:
    """Hash the folder's files and write manifest.json from checked fields; return the manifest."""
    files = _weight_files(folder)
    if _forbidden(files):
        raise CourseInputError(f"pickle or code files were written to {folder}: {_forbidden(files)}; only safetensors "
                               f"weights and JSON/text configs are allowed (save with safe_serialization=True).")
    manifest = {
        "name": fields["name"],
        "class": class_path,
        **{key: fields[key] for key in ("command", "data_seed", "steps", "wall_time_s", "metrics", "train_config",
                                        "recipe", "num_parameters")},
        "versions": environment.versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "notes": fields["notes"],
        "files": {f: {"sha256": sha256_file(folder / f), "bytes": (folder / f).stat().st_size} for f in files},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _plain(value):
    """JSON's fallback: numpy scalars and one-element tensors as Python numbers; anything else is refused."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} is not a JSON value")


def read_manifest(name_or_path: str | Path) -> dict:
    """Return a checkpoint's manifest, or raise saying which folder was looked at and how to rebuild the checkpoint."""
    folder = checkpoint_dir(name_or_path)
    path = folder / MANIFEST
    if not path.is_file():
        raise CourseInputError(f"no checkpoint manifest in {_where(name_or_path, folder)}: {path} is missing. "
                               + _fix(folder.name))
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CourseInputError(f"{path} is not valid JSON ({exc}). " + _fix(folder.name)) from None
    if not isinstance(manifest, dict):
        raise CourseInputError(f"{path} holds a {type(manifest).__name__}, not a manifest (a JSON object). "
                               + _fix(folder.name))
    return manifest


def _listed_files(manifest: dict, path: Path, name: str) -> dict:
    """Return the manifest's files table {relative path: {"sha256", ...}}, or raise saying what is wrong with it."""
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise CourseInputError(f"{path} has no 'files' table (each file's SHA-256), so nothing in the folder can be "
                               f"vouched for. " + _fix(name))
    for rel, info in files.items():
        if not isinstance(info, dict) or not isinstance(info.get("sha256"), str):
            raise CourseInputError(f"{path}: the entry of {rel!r} has no 'sha256'. " + _fix(name))
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts or "\\" in rel or not parts:
            raise CourseInputError(f"{path} lists {rel!r}, a path outside its folder; a manifest lists the "
                                   f"folder's own files only. " + _fix(name))
    return files


def verify(name_or_path: str | Path) -> dict:
    """Check the folder holds exactly the files its manifest lists, each with its SHA-256; return the manifest, or raise.

    Refused: a manifest without a files table; any file in the folder the manifest does not list (a
    library would load an unlisted pytorch_model.bin, a pickle, as a fallback); pickle and code files
    (FORBIDDEN_SUFFIXES), listed or not; a listed file missing or changed.
    """
    folder = checkpoint_dir(name_or_path)
    manifest = read_manifest(name_or_path)
    name = str(manifest.get("name", folder.name))
    files = _listed_files(manifest, folder / MANIFEST, name)
    forbidden = _forbidden(list(files) + _weight_files(folder))
    if forbidden:
        raise CourseInputError(f"{folder} holds pickle or code files {sorted(set(forbidden))}: the course never loads "
                               f"them (a pickle can run any code). Delete them; weights are safetensors. " + _fix(name))
    unlisted = sorted(set(_weight_files(folder)) - set(files))
    if unlisted:
        raise CourseInputError(f"{folder} holds files its manifest does not list: {unlisted}. No hash vouches for them "
                               f"and a library could load them; delete them, or, if you made them, rewrite the "
                               f"manifest with checkpoints.write_manifest(folder, class_path=...). " + _fix(name))
    for rel, info in files.items():
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


def _resolve_class(class_path) -> type:
    """Return the class a manifest names, if it comes from ALLOWED_MODULES (the package or a module in it) and loads."""
    module_name, _, cls_name = class_path.rpartition(".") if isinstance(class_path, str) else ("", "", "")
    if not module_name or module_name.split(".")[0] not in ALLOWED_MODULES:
        raise CourseInputError(f"manifest class {class_path!r} is not from course_lib, diffusers or transformers "
                               f"(write it as e.g. 'diffusers.UNet2DModel').")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError):
        raise CourseInputError(f"manifest class {class_path!r} does not exist in this installation "
                               f"(a typo, or another library version).") from None
    if not isinstance(cls, type) or not hasattr(cls, "from_pretrained"):
        raise CourseInputError(f"manifest class {class_path!r} is not a model class with from_pretrained.")
    return cls


def loading_kwargs() -> dict:
    """Return from_pretrained's keywords for diffusers here: without `accelerate`, low_cpu_mem_usage=False.

    diffusers' default (low_cpu_mem_usage=True) needs `accelerate`; without it diffusers falls back and says
    so at length on every load, so the course asks for the fallback itself.
    """
    return {} if importlib.util.find_spec("accelerate") else {"low_cpu_mem_usage": False}


def load(name_or_path: str | Path, device: torch.device | str | None = None):
    """Verify a checkpoint's hashes, then build its model with from_pretrained; return it in eval mode on `device`.

    device defaults to environment.default_device(); a device this machine lacks is refused before loading.
    """
    device = target_device(device)
    folder = checkpoint_dir(name_or_path)
    manifest = verify(name_or_path)
    cls = _resolve_class(manifest.get("class"))
    kwargs = loading_kwargs() if manifest["class"].startswith(("diffusers.", "course_lib.")) else {}
    model = cls.from_pretrained(folder, **kwargs)
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


STATE_FIELDS = ("model", "ema_model", "optimizer", "generator", "config", "step", "losses", "wall_time_s")
STATE_FILES = ("model.safetensors", "optimizer.safetensors")


def _state_folder(folder) -> Path:
    if not isinstance(folder, (str, Path)) or not str(folder).strip():
        raise CourseInputError(f"a training state folder is a path (str or pathlib.Path), got {folder!r}.")
    return Path(folder)


def _check_state(state) -> None:
    if not all(hasattr(state, name) for name in STATE_FIELDS):
        raise CourseInputError(f"state must be a training.TrainState (what training.train returns, with "
                               f"{', '.join(STATE_FIELDS)}), got {type(state).__name__}.")


def save_training_state(state, folder: str | Path) -> None:
    """Write what `training.train(..., resume=folder)` needs: model, EMA, optimiser, generator, step, losses."""
    _check_state(state)
    folder = _state_folder(folder)
    if folder.exists() and not folder.is_dir():
        raise CourseInputError(f"{folder} is a file, not a folder; choose a folder for the training state.")
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
    (folder / TRAINER_STATE).write_text(json.dumps(meta))


def load_training_state(folder: str | Path, state) -> None:
    """Fill a fresh TrainState (same model architecture) from a folder written by save_training_state."""
    _check_state(state)
    folder = _state_folder(folder)
    meta_path = folder / TRAINER_STATE
    if not meta_path.is_file():
        raise CourseInputError(f"no training state at {folder} ({TRAINER_STATE} missing); "
                               f"save one with checkpoints.save_training_state(state, folder).")
    try:
        meta = json.loads(meta_path.read_text())
        fields = {key: meta[key] for key in ("step", "losses", "wall_time_s", "optimizer", "has_ema")}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise CourseInputError(f"{meta_path} is not a training state written by save_training_state ({exc!r}); "
                               f"delete the folder and train from scratch.") from None
    needed = STATE_FILES + (("ema.safetensors",) if fields["has_ema"] else ())
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        raise CourseInputError(f"the training state in {folder} lacks {missing}; it was only partly written. "
                               f"Delete the folder and train from scratch.")
    if fields["has_ema"] and state.ema_model is None:
        raise CourseInputError("the saved run has an EMA but the config has ema_decay=0; use the saved config.")
    try:
        load_model(state.model, str(folder / "model.safetensors"))
        if fields["has_ema"]:
            load_model(state.ema_model, str(folder / "ema.safetensors"))
        tensors = load_file(str(folder / "optimizer.safetensors"))
        state.generator.set_state(tensors.pop("generator_state"))
        state.optimizer.load_state_dict(_optimizer_state_dict(tensors, fields["optimizer"]))
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CourseInputError(f"the training state in {folder} does not fit this model and optimiser "
                               f"({str(exc).splitlines()[0][:200]}); resume with the same recipe, or start afresh.") from None
    state.step = fields["step"]
    state.losses = list(fields["losses"])
    state.wall_time_s = fields["wall_time_s"]
