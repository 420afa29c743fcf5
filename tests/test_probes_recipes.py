"""Probes of course_lib.recipes: bad and unusual inputs to every public function, each with the expected
outcome (a CourseInputError whose message names what was wrong, raised before any training starts, or
acceptance with the right result). A shortened run can never overwrite a shipped checkpoint."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from course_lib import checkpoints, environment, models, recipes, training
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any training starts: the door must refuse first."""
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("training started before the input was checked"))


@pytest.mark.parametrize("bad", ["ddpm_cats", "", None, 3, ["ddpm_moons"]])
def test_get_names_the_known_recipes(bad):
    with pytest.raises(CourseInputError, match="known recipes: ddpm_moons"):
        recipes.get(bad)


@pytest.mark.parametrize("steps", [0, -1, 1.5, "5", True])
def test_run_refuses_a_bad_step_count_before_training(no_training, tmp_path, steps):
    with pytest.raises(CourseInputError, match="steps"):
        recipes.run("ddpm_moons", steps=steps, out=tmp_path / "m", device="cpu")


@pytest.mark.parametrize("out, match", [
    (None, "would overwrite the shipped data/ddpm_moons"),
    ("ddpm_moons", "would overwrite the shipped data/ddpm_moons"),
    (str(environment.DATA_DIR / "ddpm_moons"), "would overwrite the shipped data/ddpm_moons"),
    ("ddpm_digits", "shipped checkpoint of recipe 'ddpm_digits'"),
    (environment.DATA_DIR / "clip", "shipped checkpoint of recipe 'clip'"),
    (3, "a checkpoint is a name"),
])
def test_a_shortened_run_never_overwrites_a_shipped_checkpoint(no_training, out, match):
    before = checkpoints.sha256_file(environment.DATA_DIR / "ddpm_moons" / checkpoints.MANIFEST)
    with pytest.raises(CourseInputError, match=match):
        recipes.run("ddpm_moons", steps=5, out=out, device="cpu")
    assert checkpoints.sha256_file(environment.DATA_DIR / "ddpm_moons" / checkpoints.MANIFEST) == before


@pytest.mark.parametrize("kwargs, match", [
    (dict(device="gpu"), "not a device"),
    (dict(state_dir=3), "state_dir"),
])
def test_run_refuses_a_bad_device_or_state_folder_before_training(no_training, tmp_path, kwargs, match):
    with pytest.raises(CourseInputError, match=match):
        recipes.run("ddpm_moons", steps=2, out=tmp_path / "m", **{"device": "cpu", **kwargs})


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_run_refuses_cuda_on_a_machine_without_it(no_training, tmp_path):
    with pytest.raises(CourseInputError, match="no CUDA device"):
        recipes.run("ddpm_moons", steps=2, out=tmp_path / "m", device="cuda")


def test_run_takes_numpy_steps_and_a_recipe_object(tmp_path):
    manifest = recipes.run("ddpm_moons", steps=np.int64(2), out=tmp_path / "m", device="cpu", progress=False,
                           evaluate=False)
    assert manifest["steps"] == 2 and manifest["command"].startswith("python -m course_lib.recipes ddpm_moons --steps 2 ")
    smaller = dataclasses.replace(recipes.get("ddpm_moons"), config=dataclasses.replace(recipes.MOONS_CONFIG, batch_size=8))
    manifest = recipes.run(smaller, steps=2, out=str(tmp_path / "s"), device=torch.device("cpu"), progress=False,
                           evaluate=False)
    assert manifest["train_config"]["batch_size"] == 8 and checkpoints.verify(tmp_path / "s")["steps"] == 2


def test_a_new_family_plugs_in_as_one_subclass(tmp_path):
    # What issue 23's families do: subclass, override what differs, run. Here: a moons model predicting x0.
    @dataclass(frozen=True)
    class SampleMoons(recipes.MoonsRecipe):
        prediction_type: str = "sample"

    recipe = SampleMoons(name="moons_x0", description="x0-predicting TimeMLP", config=recipes.MOONS_CONFIG, data_seed=0)
    assert recipe.loss_fn().keywords["prediction_type"] == "sample"
    manifest = recipes.run(recipe, steps=2, out=tmp_path / "x0", device="cpu", progress=False, evaluate=False)
    assert manifest["recipe"]["loss"]["prediction_type"] == "sample" and manifest["name"] == "moons_x0"


def test_the_registry_holds_every_family_once():
    names = [r.name for family in recipes.FAMILIES for r in family.RECIPES]
    assert names == list(recipes.RECIPES) and len(set(names)) == len(names)


@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_every_recipe_describes_itself_in_json(name):
    record = recipes.get(name).to_dict()
    assert json.loads(json.dumps(record)) == record and record["description"]


@pytest.mark.parametrize("name", ["ddpm_moons", "ddpm_digits", "ddpm_digits_cond", "vae", "clip"])
def test_loop_recipes_build_a_model_data_and_a_loss_that_trains_one_step(name):
    recipe = recipes.get(name)
    config = dataclasses.replace(recipe.config, steps=1, batch_size=4, checkpoint_every=0, autocast=None)
    state = training.train(recipe.build_model(), recipe.build_data(), recipe.loss_fn(), config, device="cpu",
                           progress=False)
    assert state.step == 1 and np.isfinite(state.losses[0])


def test_the_base_classes_say_what_to_override():
    base = recipes.Recipe(name="x", description="d", config=recipes.MOONS_CONFIG, data_seed=0)
    with pytest.raises(NotImplementedError):
        base.train(base.config, device=torch.device("cpu"))
    with pytest.raises(NotImplementedError):
        base.evaluate(None)
    loop = recipes.LoopRecipe(name="x", description="d", config=recipes.MOONS_CONFIG, data_seed=0)
    for method in (loop.build_model, loop.build_data, loop.loss_fn):
        with pytest.raises(NotImplementedError):
            method()
    assert recipes.model_config(object()) == {}


# ----------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, match", [
    (["ddpm_cats"], "known recipes"),
    (["ddpm_moons", "--steps", "3"], "would overwrite the shipped data/ddpm_moons"),
    (["ddpm_moons", "--steps", "0", "--out", "/tmp/x"], "steps"),
    (["ddpm_moons", "--threads", "0", "--steps", "1", "--out", "/tmp/x"], "--threads"),
    (["ddpm_moons", "--steps", "1", "--out", "/tmp/x", "--device", "gpu"], "not a device"),
])
def test_the_command_line_says_what_is_wrong(no_training, capsys, argv, match):
    threads = torch.get_num_threads()
    with pytest.raises(SystemExit) as info:
        recipes.main(argv)
    torch.set_num_threads(threads)
    assert info.value.code == 2
    assert match in capsys.readouterr().err


def test_the_command_line_lists_the_recipes(capsys):
    recipes.main(["--list"])
    out = capsys.readouterr().out
    assert all(name in out for name in recipes.RECIPES) and "prompt_writer" in out
    recipes.main([])
    assert capsys.readouterr().out == out


# ----------------------------------------------------------------------------------------------
# The measurement and data functions
# ----------------------------------------------------------------------------------------------

def test_moons_data_takes_numpy_seeds_and_refuses_bad_ones():
    torch.testing.assert_close(recipes.moons_data(np.int64(0)), recipes.moons_data(0))
    for bad in (-1, "0", 1.5):
        with pytest.raises(CourseInputError, match="data_seed"):
            recipes.moons_data(bad)


@pytest.mark.parametrize("kwargs, match", [(dict(num_samples=1), "num_samples"), (dict(num_samples=2.5), "num_samples"),
                                           (dict(seed=-1), "seed"), (dict(draw_data=None), "draw_data")])
def test_evaluate_2d_refuses_bad_settings(kwargs, match):
    with pytest.raises(CourseInputError, match=match):
        recipes.evaluate_2d(models.time_mlp(hidden_dim=8), **kwargs)


def test_evaluate_digits_refuses_bad_settings():
    with pytest.raises(CourseInputError, match="num_samples"):
        recipes.evaluate_digits(models.digits_unet(), num_samples=0)
    with pytest.raises(CourseInputError, match="seed"):
        recipes.evaluate_digits(models.digits_unet(), seed=np.float64(1.5))
    with pytest.raises(CourseInputError, match="digits UNet2DModel"):
        recipes.evaluate_digits(torch.nn.Linear(2, 2))


def test_digits_data_with_and_without_labels():
    x0 = recipes.digits_data()
    both = recipes.digits_data(labels=True)
    assert x0.shape == (1797, 1, 16, 16) and torch.equal(both["x0"], x0) and both["class_labels"].max() == 9


def test_the_vae_finishing_steps_check_their_input():
    with pytest.raises(CourseInputError, match="AutoencoderKL"):
        recipes.finish_vae(torch.nn.Linear(2, 2))
    if not torch.cuda.is_available():
        with pytest.raises(CourseInputError, match="no CUDA device"):
            recipes.vae_kl_sweep(device="cuda")
