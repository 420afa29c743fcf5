"""Probes of course_lib.checkpoints: bad and unusual inputs to every public function, each with the expected
outcome (a CourseInputError whose message names what was wrong, or acceptance with the right result).

The door must hold (issue 22): verify refuses any file its manifest does not list and every pickle or
code file, a manifest without a files table is a clear error, the class allow-list matches packages
exactly, "./folder" means that folder, and a device the machine lacks is refused before loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import checkpoints, environment, models, training
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def saved(tmp_path):
    model = models.time_mlp(seed=0, hidden_dim=16)
    folder = tmp_path / "tiny"
    checkpoints.save_pretrained(model, folder, name="tiny", steps=1)
    return model, folder


def _rewrite(folder: Path, **changes) -> dict:
    manifest = json.loads((folder / checkpoints.MANIFEST).read_text())
    manifest.update(changes)
    (folder / checkpoints.MANIFEST).write_text(json.dumps(manifest))
    return manifest


# ----------------------------------------------------------------------------------------------
# verify: only what the manifest lists, never a pickle
# ----------------------------------------------------------------------------------------------

def test_a_pickle_next_to_a_manifest_listing_only_the_config_is_refused(saved):
    # The attack of the issue: the manifest lists config.json only, the weights are a pickle that diffusers'
    # from_pretrained would fall back to. Nothing is loaded.
    _, folder = saved
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    torch.save({"w": torch.zeros(1)}, folder / "diffusion_pytorch_model.bin")
    config = folder / "config.json"
    _rewrite(folder, files={"config.json": {"sha256": checkpoints.sha256_file(config), "bytes": config.stat().st_size}})
    for call in (checkpoints.verify, lambda f: checkpoints.load(f, device="cpu")):
        with pytest.raises(CourseInputError, match=r"diffusion_pytorch_model\.bin"):
            call(folder)


@pytest.mark.parametrize("extra", ["pytorch_model.bin", "model.pt", "weights.pth", "last.ckpt", "data.pkl",
                                   "modeling_evil.py", "unet/extra.safetensors", "README.md"])
def test_any_unlisted_file_is_refused(saved, extra):
    _, folder = saved
    (folder / extra).parent.mkdir(exist_ok=True)
    (folder / extra).write_bytes(b"not vouched for")
    with pytest.raises(CourseInputError, match=Path(extra).name.replace(".", r"\.")):
        checkpoints.verify(folder)


def test_a_listed_pickle_is_refused_even_with_its_right_hash(saved):
    _, folder = saved
    torch.save({"w": torch.zeros(1)}, folder / "extra.bin")
    manifest = json.loads((folder / checkpoints.MANIFEST).read_text())
    manifest["files"]["extra.bin"] = {"sha256": checkpoints.sha256_file(folder / "extra.bin"), "bytes": 1}
    _rewrite(folder, files=manifest["files"])
    with pytest.raises(CourseInputError, match=r"pickle or code files.*extra\.bin"):
        checkpoints.verify(folder)


def test_operating_system_litter_is_ignored(saved):
    _, folder = saved
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    assert checkpoints.verify(folder)["name"] == "tiny"


@pytest.mark.parametrize("files, match", [
    (None, "no 'files' table"),
    ({}, "no 'files' table"),
    ([], "no 'files' table"),
    ("config.json", "no 'files' table"),
    ({"config.json": {"bytes": 3}}, "has no 'sha256'"),
    ({"config.json": "abc"}, "has no 'sha256'"),
    ({"../tiny/config.json": {"sha256": "0" * 64}}, "outside its folder"),
    ({"/etc/passwd": {"sha256": "0" * 64}}, "outside its folder"),
])
def test_a_broken_files_table_is_a_clear_error(saved, files, match):
    _, folder = saved
    manifest = json.loads((folder / checkpoints.MANIFEST).read_text())
    if files is None:
        del manifest["files"]
    else:
        manifest["files"] = files
    (folder / checkpoints.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CourseInputError, match=match):
        checkpoints.verify(folder)


@pytest.mark.parametrize("text, match", [("{not json", "not valid JSON"), ("[1, 2]", "not a manifest"),
                                         ("\"files\"", "not a manifest")])
def test_a_manifest_that_is_not_a_json_object_is_a_clear_error(saved, text, match):
    _, folder = saved
    (folder / checkpoints.MANIFEST).write_text(text)
    with pytest.raises(CourseInputError, match=match):
        checkpoints.read_manifest(folder)


# ----------------------------------------------------------------------------------------------
# The class allow-list: by package, exactly
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("class_path, match", [
    ("diffusers_evil.UNet2DModel", "not from course_lib"),
    ("transformersX.CLIPModel", "not from course_lib"),
    ("course_lib_extra.models.TimeMLP", "not from course_lib"),
    ("os.system", "not from course_lib"),
    ("diffusers", "not from course_lib"),
    ("", "not from course_lib"),
    (123, "not from course_lib"),
    (None, "not from course_lib"),
    ("diffusers.NoSuchModel", "does not exist"),
    ("diffusers.os.system", "does not exist"),
    ("diffusers.utils.logging", "not a model class"),
    ("course_lib.models.seeded", "not a model class"),
])
def test_only_model_classes_of_the_three_packages_load(saved, class_path, match):
    _, folder = saved
    _rewrite(folder, **{"class": class_path})
    with pytest.raises(CourseInputError, match=match):
        checkpoints.load(folder, device="cpu")


# ----------------------------------------------------------------------------------------------
# Names and paths: "./folder" is that folder, a bare name is data/NAME, and errors say which was read
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("given, expected", [
    ("clip", environment.DATA_DIR / "clip"),
    ("./clip", Path("clip")),
    ("../runs/clip", Path("../runs/clip")),
    ("runs/clip", Path("runs/clip")),
    ("/tmp/clip", Path("/tmp/clip")),
    (Path("clip"), Path("clip")),
    (".", Path(".")),
])
def test_checkpoint_dir_reads_names_and_paths(given, expected):
    assert checkpoints.checkpoint_dir(given) == expected


@pytest.mark.parametrize("bad", ["", "   ", None, 3, ["clip"]])
def test_checkpoint_dir_refuses_what_is_neither(bad):
    with pytest.raises(CourseInputError, match="a checkpoint is a name"):
        checkpoints.checkpoint_dir(bad)


def test_load_dot_slash_folder_reads_that_folder(saved, monkeypatch):
    model, folder = saved
    monkeypatch.chdir(folder.parent)
    for given in ("./tiny", "tiny/", str(folder)):
        loaded = checkpoints.load(given, device="cpu")
        x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(loaded(x, 4), model(x, 4))
    monkeypatch.chdir(folder)
    assert checkpoints.verify("../tiny")["name"] == "tiny"


def test_a_bare_name_means_data_and_the_error_says_so(saved, monkeypatch):
    _, folder = saved
    monkeypatch.chdir(folder.parent)  # ./tiny exists here, data/tiny does not
    with pytest.raises(CourseInputError) as info:
        checkpoints.load("tiny", device="cpu")
    message = str(info.value)
    assert str(environment.DATA_DIR / "tiny") in message and "'./tiny'" in message


def test_a_missing_path_names_the_path_looked_at(tmp_path):
    with pytest.raises(CourseInputError, match=str(tmp_path / "nowhere")):
        checkpoints.read_manifest(tmp_path / "nowhere")


# ----------------------------------------------------------------------------------------------
# Devices: checked before anything is loaded
# ----------------------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_a_device_the_machine_lacks_is_refused_before_loading(saved, device, monkeypatch):
    _, folder = saved
    monkeypatch.setattr(checkpoints, "verify", lambda *a, **k: pytest.fail("loaded before checking the device"))
    with pytest.raises(CourseInputError, match="no CUDA device"):
        checkpoints.load(folder, device=device)


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "", 1.5])
def test_a_device_that_is_not_one_is_refused(device):
    with pytest.raises(CourseInputError, match="device"):
        checkpoints.target_device(device)


def test_target_device_accepts_the_cpu_and_none():
    assert checkpoints.target_device("cpu") == torch.device("cpu")
    assert checkpoints.target_device(torch.device("cpu")) == torch.device("cpu")
    assert checkpoints.target_device(None) == environment.default_device()


# ----------------------------------------------------------------------------------------------
# save_pretrained / write_manifest: never delete a folder that is not a checkpoint; numpy numbers are numbers
# ----------------------------------------------------------------------------------------------

def test_save_refuses_an_object_without_save_pretrained_and_keeps_the_folder(saved):
    _, folder = saved
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(CourseInputError, match="has no save_pretrained"):
        checkpoints.save_pretrained(torch.nn.Linear(2, 2), folder)
    assert sorted(p.name for p in folder.iterdir()) == before


def test_save_refuses_to_empty_a_folder_that_is_not_a_checkpoint(tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(CourseInputError, match="not a checkpoint"):
        checkpoints.save_pretrained(models.time_mlp(hidden_dim=8), precious)
    assert (precious / "thesis.tex").read_text() == "years of work"
    afile = tmp_path / "a_file"
    afile.write_text("x")
    with pytest.raises(CourseInputError, match="is a file"):
        checkpoints.save_pretrained(models.time_mlp(hidden_dim=8), afile)


def test_save_replaces_an_earlier_checkpoint_and_an_empty_folder(saved, tmp_path):
    _, folder = saved
    (tmp_path / "empty").mkdir()
    for target in (folder, tmp_path / "empty"):
        manifest = checkpoints.save_pretrained(models.time_mlp(seed=1, hidden_dim=8), target, steps=2)
        assert manifest["steps"] == 2 and checkpoints.verify(target)["steps"] == 2


def test_numpy_numbers_are_accepted_in_a_manifest(tmp_path):
    manifest = checkpoints.save_pretrained(
        models.time_mlp(hidden_dim=8), tmp_path / "np", steps=np.int64(10), data_seed=np.int32(3),
        wall_time_s=np.float32(1.25), metrics={"loss": np.float32(0.5), "ok": np.bool_(True), "t": torch.tensor(2.0)})
    on_disk = json.loads((tmp_path / "np" / checkpoints.MANIFEST).read_text())
    assert on_disk == manifest
    assert manifest["steps"] == 10 and manifest["data_seed"] == 3 and manifest["wall_time_s"] == 1.2
    assert manifest["metrics"] == {"loss": 0.5, "ok": True, "t": 2.0}


@pytest.mark.parametrize("field, value, match", [
    ("steps", -1, "steps"), ("steps", 1.5, "steps"), ("data_seed", "0", "data_seed"),
    ("wall_time_s", float("nan"), "wall_time_s"), ("wall_time_s", -3.0, "wall_time_s"),
    ("metrics", [1, 2], "metrics"), ("metrics", {"x": object()}, "JSON values"), ("name", "", "name"),
])
def test_bad_manifest_fields_are_refused_before_anything_is_written(tmp_path, field, value, match):
    with pytest.raises(CourseInputError, match=match):
        checkpoints.save_pretrained(models.time_mlp(hidden_dim=8), tmp_path / "bad", **{field: value})
    assert not (tmp_path / "bad").exists()


def test_write_manifest_refuses_a_missing_folder_a_pickle_and_a_class_it_cannot_load(tmp_path):
    with pytest.raises(CourseInputError, match="no folder"):
        checkpoints.write_manifest(tmp_path / "none", class_path="diffusers.UNet2DModel")
    (tmp_path / "p").mkdir()
    torch.save({}, tmp_path / "p" / "pytorch_model.bin")
    with pytest.raises(CourseInputError, match="pickle"):
        checkpoints.write_manifest(tmp_path / "p", class_path="diffusers.UNet2DModel")
    (tmp_path / "p" / "pytorch_model.bin").unlink()
    with pytest.raises(CourseInputError, match="not from course_lib"):
        checkpoints.write_manifest(tmp_path / "p", class_path="builtins.dict")


@pytest.mark.parametrize("bad", [None, 3, "/no/such/file", "."])
def test_sha256_file_needs_a_file(bad):
    with pytest.raises(CourseInputError, match="existing file"):
        checkpoints.sha256_file(bad)


# ----------------------------------------------------------------------------------------------
# Training states
# ----------------------------------------------------------------------------------------------

def _state(hidden_dim=8, steps=2):
    config = training.TrainConfig(steps=steps, batch_size=4, lr=1e-3, ema_decay=0.9, seed=0)
    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    return training.train(models.time_mlp(seed=0, hidden_dim=hidden_dim), x0, config=config, device="cpu",
                          progress=False), config


def test_a_training_state_round_trips(tmp_path):
    state, config = _state()
    assert not checkpoints.has_training_state(tmp_path / "s")
    checkpoints.save_training_state(state, tmp_path / "s")
    assert checkpoints.has_training_state(tmp_path / "s") and checkpoints.has_training_state(str(tmp_path / "s"))
    resumed = training.train(models.time_mlp(seed=5, hidden_dim=8), torch.zeros(16, 2), config=config, device="cpu",
                             resume=tmp_path / "s", progress=False)
    assert resumed.step == state.step and resumed.losses == state.losses
    torch.testing.assert_close(resumed.model.state_dict(), state.model.state_dict())


@pytest.mark.parametrize("bad_state", [None, "state", torch.nn.Linear(2, 2)])
def test_save_training_state_needs_a_train_state(tmp_path, bad_state):
    with pytest.raises(CourseInputError, match="TrainState"):
        checkpoints.save_training_state(bad_state, tmp_path / "s")


@pytest.mark.parametrize("bad_folder", [None, 3, ""])
def test_training_state_folders_are_paths(bad_folder):
    state, _ = _state()
    with pytest.raises(CourseInputError, match="folder is a path"):
        checkpoints.save_training_state(state, bad_folder)
    with pytest.raises(CourseInputError, match="folder is a path"):
        checkpoints.load_training_state(bad_folder, state)


@pytest.mark.parametrize("damage, match", [
    (lambda f: (f / "trainer_state.json").write_text("{oops"), "not a training state"),
    (lambda f: (f / "trainer_state.json").write_text("{}"), "not a training state"),
    (lambda f: (f / "model.safetensors").unlink(), "lacks"),
    (lambda f: (f / "ema.safetensors").unlink(), "lacks"),
    (lambda f: shutil.rmtree(f), "no training state"),
])
def test_a_damaged_training_state_is_a_clear_error(tmp_path, damage, match):
    state, _ = _state()
    checkpoints.save_training_state(state, tmp_path / "s")
    damage(tmp_path / "s")
    fresh, _ = _state()
    with pytest.raises(CourseInputError, match=match):
        checkpoints.load_training_state(tmp_path / "s", fresh)


def test_a_training_state_of_another_architecture_is_refused(tmp_path):
    state, _ = _state(hidden_dim=8)
    checkpoints.save_training_state(state, tmp_path / "s")
    other, _ = _state(hidden_dim=16)
    with pytest.raises(CourseInputError, match="does not fit this model"):
        checkpoints.load_training_state(tmp_path / "s", other)
