"""course_lib.recipes: each shipped checkpoint has a recipe whose config its manifest records, and the
command runs end to end (a shortened run, written to a temporary folder, never to data/)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from course_lib import checkpoints, environment, recipes
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_list_names_every_recipe():
    out = subprocess.run([sys.executable, "-m", "course_lib.recipes", "--list"], capture_output=True, text=True,
                         check=True, cwd=environment.ROOT).stdout
    for name in recipes.RECIPES:
        assert name in out


@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_every_recipe_has_a_shipped_checkpoint_that_records_it(name):
    manifest = checkpoints.read_manifest(name)
    recipe = recipes.get(name)
    assert manifest["train_config"] == recipe.config.to_dict()
    assert manifest["data_seed"] == recipe.data_seed
    for key, value in json.loads(json.dumps(recipe.to_dict())).items():  # schedule, loss, ... as JSON
        assert manifest["recipe"][key] == value, key
    assert manifest["command"].split(" --threads")[0] == f"python -m course_lib.recipes {name}"
    assert manifest["wall_time_s"] > 0 and manifest["metrics"]


def test_shipped_metrics_meet_the_issue_targets():
    moons = checkpoints.read_manifest("ddpm_moons")["metrics"]
    assert moons["ratio_ddim50_to_floor"] < 5
    digits = checkpoints.read_manifest("ddpm_digits")["metrics"]
    assert digits["uncond_confident_share"] >= 0.8 and digits["uncond_tv_from_uniform"] < 0.1
    cond = checkpoints.read_manifest("ddpm_digits_cond")["metrics"]
    assert cond["cond_accuracy"] >= 0.9 and cond["cond_tv_from_uniform"] < 0.1
    t2i = checkpoints.read_manifest("text2image")["metrics"]  # prompts of unseen scenes, at the best of g = 4, 7.5
    assert max(min(t2i[f"adherence_test_single_g{g}_{key}"] for key in ("colour", "shape", "position"))
               for g in ("4", "7.5")) >= 0.9


def test_a_shortened_run_trains_saves_and_loads(tmp_path):
    manifest = recipes.run("ddpm_moons", steps=40, out=tmp_path / "moons", device="cpu", progress=False,
                           evaluate=False)
    assert manifest["steps"] == 40 and manifest["command"].startswith("python -m course_lib.recipes ddpm_moons --steps 40")
    assert manifest["train_config"]["steps"] == 40
    model = checkpoints.load(tmp_path / "moons", device="cpu")
    assert model(torch.zeros(2, 2), 10).shape == (2, 2)
    # a shortened run is deterministic: the same command gives the same file
    again = recipes.run("ddpm_moons", steps=40, out=tmp_path / "again", device="cpu", progress=False, evaluate=False)
    assert again["files"] == manifest["files"]


def test_shortened_digits_run_resumes_from_its_state(tmp_path):
    state = tmp_path / "state"
    recipes.run("ddpm_digits_cond", steps=2, out=tmp_path / "d2", device="cpu", state_dir=state, progress=False,
                evaluate=False)
    manifest = recipes.run("ddpm_digits_cond", steps=3, out=tmp_path / "d3", device="cpu", state_dir=state,
                           progress=False, evaluate=False)
    assert manifest["steps"] == 3


def test_unknown_recipe():
    with pytest.raises(CourseInputError, match="known recipes"):
        recipes.get("ddpm_cats")
