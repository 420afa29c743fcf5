"""Probes of the doors of the core's support modules: data, claims, exercises, training, plotting, environment.

As tests/test_probes_core.py: each probe expects a CourseInputError naming the parameter (refused), acceptance
with a checked result (accepted), or, for the exercise checker, one printed line that helps the learner (prints);
none may end in a raw error from torch, matplotlib or Python.
"""

from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib import claims, data, environment, exercises, models, plotting, schedules, training  # noqa: E402
from probing import accepted, equal, refused  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

NAN = float("nan")
AB, BETAS = schedules.NoiseSchedule("linear").alpha_bars, schedules.NoiseSchedule("linear").betas
X = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
IMAGE = torch.zeros(1, 8, 8)
SMALL = dict(hidden_dim=8, num_layers=1, time_embed_dim=4)


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def prints(*fragments):
    """The call must print one failed (or passed) line holding every fragment, and raise nothing."""
    def expect(call, capsys):
        call()
        out = capsys.readouterr().out
        for fragment in fragments:
            assert fragment in out, f"{fragment!r} not in {out!r}"
    return expect


def fails_claim(call, capsys=None):
    with pytest.raises(AssertionError):
        call()


def with_axes(draw):
    """Run draw(ax) on a fresh figure, then close it."""
    fig, ax = plt.subplots()
    try:
        return draw(ax)
    finally:
        plt.close(fig)


def closing(make_figure):
    fig = make_figure()
    plt.close(fig)
    return fig


def none_fn(x):
    """The commonest learner mistake: the result is computed and never returned."""
    x + 1


NOTEBOOK = {"cells": [{"cell_type": "markdown", "source": "# Title\n\n**Time:** about 5 min", "metadata": {}},
                      {"cell_type": "code", "source": "x = 1", "metadata": {}, "outputs": [], "execution_count": None}]}

PROBES = {
    # ---------------------------------------------------------------- data
    "two_moons int seed": (lambda: data.two_moons(np.int64(10), generator=0), equal(lambda: data.two_moons(10, g(0)))),
    "two_moons zero": (lambda: data.two_moons(0), refused("n must be a positive int")),
    "two_moons negative noise": (lambda: data.two_moons(10, noise=-1), refused("noise")),
    "two_moons NaN noise": (lambda: data.two_moons(10, noise=NAN), refused("noise", "finite")),
    "two_moons str seed": (lambda: data.two_moons(10, "seed"), refused("generator")),
    "swiss_roll bool n": (lambda: data.swiss_roll(True), refused("n must")),
    "swiss_roll int seed": (lambda: data.swiss_roll(5, generator=3), equal(lambda: data.swiss_roll(5, g(3)))),
    "toy_2d ring int seed": (lambda: data.toy_2d("ring", 5, generator=0), equal(lambda: data.toy_2d("ring", 5, g(0)))),
    "toy_2d unknown": (lambda: data.toy_2d("moons", 5), refused("toy data set='moons'")),
    "load_photo unknown": (lambda: data.load_photo("cat"), refused("photo name='cat'")),
    "load_photo tiny": (lambda: data.load_photo(size=4), refused("size must be an int >= 8")),
    "load_photo float size": (lambda: data.load_photo(size=16.0), refused("size")),
    "load_digits size 7": (lambda: data.load_digits(size=7), refused("size")),
    "batch_sampler numpy size and int seed": (lambda: data.batch_sampler(X, np.int64(4))(0),
                                              equal(lambda: data.batch_sampler(X, 4)(g(0)))),
    "batch_sampler zero": (lambda: data.batch_sampler(X, 0), refused("batch_size")),
    "batch_sampler list": (lambda: data.batch_sampler([1, 2], 2), refused("need a tensor")),
    "batch_sampler empty dict": (lambda: data.batch_sampler({}, 2), refused("non-empty dict")),
    "batch_sampler empty data": (lambda: data.batch_sampler(torch.zeros(0, 2), 2), refused("empty data set")),
    "batch_sampler str seed": (lambda: data.batch_sampler(X, 2)("g"), refused("generator")),
    # ---------------------------------------------------------------- claims
    "within numpy": (lambda: claims.within("x", np.float32(0.5), np.float64(0), np.int64(1)), accepted()),
    "within NaN bound": (lambda: claims.within("x", 0.5, NAN, 1), refused("low", "finite")),
    "within NaN value": (lambda: claims.within("x", NAN, 0, 1), fails_claim),
    "within inf value": (lambda: claims.within("x", math.inf, 0, 1), fails_claim),
    "within negative digits": (lambda: claims.within("x", 0.5, 0, 1, digits=-1), refused("digits")),
    "within percent str": (lambda: claims.within("x", 0.5, 0, 1, percent="yes"), refused("percent")),
    "within label int": (lambda: claims.within(3, 0.5, 0, 1), refused("label")),
    "at_least numpy": (lambda: claims.at_least("x", np.int64(3), np.float32(2)), accepted()),
    "at_least str value": (lambda: claims.at_least("x", "3", 2), refused("value")),
    "at_most numpy NaN": (lambda: claims.at_most("x", np.float32(NAN), 1), fails_claim),
    "at_most tensor bound": (lambda: claims.at_most("x", 0.5, torch.tensor(1.0)), accepted()),
    "close strings": (lambda: claims.close("x", "a", "b"), refused("max_difference")),
    "close numpy atol": (lambda: claims.close("x", X, X + 1e-4, atol=np.float32(1e-3)), accepted()),
    "close NaN atol": (lambda: claims.close("x", X, X, atol=NAN), refused("atol")),
    "holds numpy bool": (lambda: claims.holds("x", np.True_), accepted()),
    "holds empty tensor": (lambda: claims.holds("x", torch.tensor([], dtype=torch.bool)), refused("empty tensor")),
    "holds None": (lambda: claims.holds("x", None), refused("condition")),
    "max_difference None": (lambda: claims.max_difference(None, 1), refused("max_difference")),
    "max_difference numpy arrays": (lambda: claims.max_difference(np.ones(3), np.zeros(3)), accepted(lambda d: d == 1.0)),
    # ---------------------------------------------------------------- exercises
    "check_function returns None": (lambda: exercises.check_function("ex", none_fn, lambda x: x + 1, [(X,)]),
                                    prints("❌ ex: case 0: your function returned None: did you forget `return`?")),
    "check_function empty cases": (lambda: exercises.check_function("ex", abs, abs, []), refused("cases is empty")),
    "check_function case not a tuple": (lambda: exercises.check_function("ex", abs, abs, [X]), refused("tuple of arguments")),
    "check_function wrong shape": (lambda: exercises.check_function("ex", lambda x: x[:2], lambda x: x, [(X,)]),
                                   prints("case 0: shape (2, 2), expected (8, 2)")),
    "check_function NaN answer": (lambda: exercises.check_function("ex", lambda x: x * NAN, lambda x: x, [(X,)]),
                                  prints("case 0: your answer holds 16 NaN value(s)")),
    "check_function str answer": (lambda: exercises.check_function("ex", lambda x: "x", lambda x: x, [(X,)]),
                                  prints("your answer is a str, which cannot be read as numbers")),
    "check_function tuple answer": (lambda: exercises.check_function("ex", lambda x: (x, x), lambda x: x, [(X,)]),
                                    prints("❌ ex: case 0:")),
    "check_function reference not callable": (lambda: exercises.check_function("ex", abs, 3, [(1,)]), refused("reference")),
    "check_function negative atol": (lambda: exercises.check_function("ex", abs, abs, [(1,)], atol=-1), refused("atol")),
    "check_function generator of cases": (lambda: exercises.check_function("ex", abs, abs, ((v,) for v in (-1, 2))),
                                          prints("✅ ex: correct")),
    "check_close None": (lambda: exercises.check_close("ex", None, X), prints("did you forget `return`?")),
    "check_close NaN": (lambda: exercises.check_close("ex", X * NAN, X), prints("NaN value(s)")),
    "check_close str": (lambda: exercises.check_close("ex", "abc", X), prints("cannot be read as numbers")),
    "check_close numpy": (lambda: exercises.check_close("ex", np.ones(3), torch.ones(3)), prints("✅ ex: correct")),
    "check_true None": (lambda: exercises.check_true("ex", None), prints("did you forget `return`?")),
    "check_true tensor": (lambda: exercises.check_true("ex", torch.tensor([True, False])), prints("❌ ex: not yet")),
    "check_prediction None": (lambda: exercises.check_prediction("p", lambda: None, "falls", choices=["rises", "falls"]),
                              prints("your prediction returned None")),
    "check_prediction outcome not a choice": (lambda: exercises.check_prediction("p", lambda: "up", "falls",
                                                                                 choices=["rises", "stays"]),
                                              refused("not one of the choices")),
    "check_prediction negative within": (lambda: exercises.check_prediction("p", lambda: 1.0, 1.0, within=-1),
                                         refused("within")),
    "check_prediction NaN guess": (lambda: exercises.check_prediction("p", lambda: NAN, 1.0, within=0.5),
                                   prints("you predicted nan")),
    "strip_source None": (lambda: exercises.strip_source(None), refused("source")),
    "strip_source unbalanced": (lambda: exercises.strip_source("# END SOLUTION"), refused("without")),
    "student_copy list": (lambda: exercises.student_copy([]), refused("notebook", "json.loads")),
    "count_exercises str": (lambda: exercises.count_exercises("x"), refused("notebook")),
    "count_exercises ok": (lambda: exercises.count_exercises(NOTEBOOK), accepted(lambda n: n == 0)),
    "list_exercises no cells": (lambda: exercises.list_exercises({}), refused("notebook")),
    "reading_minutes None": (lambda: exercises.reading_minutes(None), refused("notebook")),
    "reading_minutes ok": (lambda: exercises.reading_minutes(NOTEBOOK), accepted(lambda r: r[:2] == (6, 1))),
    "run_times missing": (lambda: exercises.run_times("no/such/report.txt"), refused("no run-time report")),
    "restore_solutions None": (lambda: exercises.restore_solutions(None, NOTEBOOK), refused("student")),
    "exercises_markdown empty folder": (lambda: exercises.exercises_markdown("/nonexistent-folder"),
                                        refused("no notebooks named NN_*.ipynb")),
    # ---------------------------------------------------------------- training
    "TrainConfig numpy": (lambda: json.dumps(training.TrainConfig(steps=np.int64(5), lr=np.float32(1e-3)).to_dict()),
                          accepted()),
    "TrainConfig negative steps": (lambda: training.TrainConfig(steps=-1), refused("steps")),
    "TrainConfig NaN lr": (lambda: training.TrainConfig(lr=NAN), refused("lr")),
    "TrainConfig bool batch": (lambda: training.TrainConfig(batch_size=True), refused("batch_size")),
    "TrainConfig one beta": (lambda: training.TrainConfig(adam_betas=(0.9,)), refused("adam_betas")),
    "TrainConfig grad_clip 0": (lambda: training.TrainConfig(grad_clip=0), refused("grad_clip")),
    "TrainConfig ema 1": (lambda: training.TrainConfig(ema_decay=1.0), refused("ema_decay")),
    "TrainConfig.from_dict str": (lambda: training.TrainConfig.from_dict("x"), refused("from_dict")),
    "TrainConfig.lr_at negative": (lambda: training.TrainConfig().lr_at(-1), refused("step")),
    "check_config dict": (lambda: training.check_config({"steps": 1}), refused("config", "TrainConfig(**your_dict)")),
    "split_batch str": (lambda: training.split_batch("x"), refused("batch")),
    "drop_condition int mask": (lambda: training.drop_condition({"c": X}, {"c": 0.0}, torch.tensor([1, 0])), refused("drop")),
    "diffusion_loss int seed": (lambda: training.diffusion_loss(models.time_mlp(**SMALL), X, 0, alpha_bars=AB),
                                equal(lambda: training.diffusion_loss(models.time_mlp(**SMALL), X, g(0), alpha_bars=AB))),
    "diffusion_loss betas": (lambda: training.diffusion_loss(models.time_mlp(**SMALL), X, alpha_bars=BETAS),
                             refused("alpha_bars", "betas")),
    "diffusion_loss dropout 1.5": (lambda: training.diffusion_loss(models.time_mlp(**SMALL), X, alpha_bars=AB,
                                                                   cond_dropout=1.5), refused("cond_dropout")),
    "diffusion_loss null_cond str": (lambda: training.diffusion_loss(models.time_mlp(**SMALL), X, alpha_bars=AB,
                                                                     null_cond="x"), refused("null_cond")),
    "diffusion_loss int x0": (lambda: training.diffusion_loss(models.time_mlp(**SMALL), X.long(), alpha_bars=AB),
                              refused("x0")),
    "diffusion_loss str seed": (lambda: training.diffusion_loss(models.time_mlp(**SMALL), X, "s", alpha_bars=AB),
                                refused("generator")),
    "default_loss_fn numpy": (lambda: training.default_loss_fn(np.int64(100)).keywords["alpha_bars"].shape,
                              accepted(lambda s: s == (100,))),
    "update_ema decay 2": (lambda: training.update_ema(models.time_mlp(**SMALL), models.time_mlp(**SMALL), 2),
                           refused("decay")),
    "ema_decay_at negative": (lambda: training.ema_decay_at(-1, 0.9), refused("step")),
    "train dict config": (lambda: training.train(models.time_mlp(**SMALL), X, config={"steps": 1}), refused("config")),
    "train not a model": (lambda: training.train("model", X), refused("model must be")),
    "train int seed": (lambda: training.train(models.time_mlp(**SMALL), X, config=training.TrainConfig(steps=2, batch_size=4),
                                              generator=5, device="cpu", progress=False).losses,
                       accepted(lambda losses: losses == training.train(
                           models.time_mlp(**SMALL), X, config=training.TrainConfig(steps=2, batch_size=4),
                           generator=g(5), device="cpu", progress=False).losses)),
    "train device gpu": (lambda: training.train(models.time_mlp(**SMALL), X, device="gpu"), refused("device")),
    "train loss_fn int": (lambda: training.train(models.time_mlp(**SMALL), X, loss_fn=5), refused("loss_fn")),
    "train callback str": (lambda: training.train(models.time_mlp(**SMALL), X, callback="x"), refused("callback")),
    "train optimizer str": (lambda: training.train(models.time_mlp(**SMALL), X, optimizer="adam"), refused("optimizer")),
    "train data int": (lambda: training.train(models.time_mlp(**SMALL), 42), refused("data must be")),
    "smooth window 0": (lambda: training.smooth([1.0, 2.0], window=0), refused("window")),
    "smooth numpy window": (lambda: training.smooth([1.0, 3.0], window=np.int64(2)), accepted(lambda s: s == [1.0, 2.0])),
    # ---------------------------------------------------------------- plotting
    "to_image batch": (lambda: plotting.to_image(torch.zeros(2, 5, 4, 4)), refused("x must be one image")),
    "to_image int": (lambda: plotting.to_image(torch.zeros(1, 4, 4, dtype=torch.uint8)), refused("x", "floating-point")),
    "to_image grey": (lambda: plotting.to_image(-torch.ones(1, 4, 4)), accepted(lambda a: a.shape == (4, 4) and a.max() == 0)),
    "show_images empty": (lambda: plotting.show_images([]), refused("images is empty")),
    "show_images short titles": (lambda: plotting.show_images([IMAGE, IMAGE], titles=["a"]), refused("titles")),
    "show_images a batch": (lambda: closing(lambda: plotting.show_images(torch.zeros(2, 1, 8, 8))),
                            accepted(lambda fig: len(fig.axes) == 2)),
    "show_images ncols 0": (lambda: plotting.show_images([IMAGE], ncols=0), refused("ncols")),
    "scatter2d 3-D points": (lambda: with_axes(lambda ax: plotting.scatter2d(ax, torch.randn(5, 3))), refused("points")),
    "show_image_rows empty": (lambda: plotting.show_image_rows({}), refused("rows")),
    "show_image_rows sizes differ": (lambda: plotting.show_image_rows({"a": [IMAGE, torch.zeros(1, 4, 4)]}),
                                     refused("same height and width")),
    "show_image_rows short titles": (lambda: plotting.show_image_rows({"a": [IMAGE, IMAGE]}, col_titles=["x"]),
                                     refused("col_titles")),
    "loss_curve empty": (lambda: with_axes(lambda ax: plotting.loss_curve(ax, [])), refused("losses")),
    "loss_curve window 0": (lambda: with_axes(lambda ax: plotting.loss_curve(ax, [1.0, 2.0], window=0)), refused("window")),
    "arrow_field not callable": (lambda: with_axes(lambda ax: plotting.arrow_field(ax, 5)), refused("vector_fn")),
    "arrow_field wrong output": (lambda: with_axes(lambda ax: plotting.arrow_field(ax, lambda x: x[:, :1])),
                                 refused("vector_fn must return")),
    "arrow_field n 1": (lambda: with_axes(lambda ax: plotting.arrow_field(ax, lambda x: x, n=1)), refused("n must")),
    "trajectories empty": (lambda: with_axes(lambda ax: plotting.trajectories(ax, [])), refused("trajectory is empty")),
    "trajectories 3-D": (lambda: with_axes(lambda ax: plotting.trajectories(ax, [torch.zeros(4, 3)])), refused("trajectory")),
    # ---------------------------------------------------------------- environment
    "opening not a notebook": (lambda: environment.opening({}), refused("notebook", "json.loads")),
    "opening no cells": (lambda: environment.opening({"cells": []}), refused("no cells")),
    "opening ok": (lambda: environment.opening(NOTEBOOK), accepted(lambda o: o["title"] == "Title" and o["time"] == "5 min")),
    "course_map missing folder": (lambda: environment.course_map("/nonexistent-folder"), refused("is not a folder")),
    "median_seconds not callable": (lambda: environment.median_seconds(5), refused("fn")),
    "median_seconds zero repeats": (lambda: environment.median_seconds(lambda: None, repeats=0), refused("repeats")),
    "median_seconds numpy repeats": (lambda: environment.median_seconds(lambda: None, repeats=np.int64(2)),
                                     accepted(lambda s: s >= 0)),
    "describe": (lambda: environment.describe(), accepted(lambda text: text.startswith("device: "))),
}


@pytest.mark.parametrize("probe", list(PROBES))
def test_probe(probe, capsys):
    call, expect = PROBES[probe]
    expect(call, capsys)
