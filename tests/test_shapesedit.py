"""ShapesEdit: the cases, the scores (SSIM against scikit-image), and evaluate() on oracle methods."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from course_lib import metrics, shapes, shapesedit
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")

# What the text-to-image UNet trains on (course_lib.recipes: T2I_DATASET_SIZE scenes of
# text2image.latent_dataset, data_seed 0); written out because importing recipes takes ~10 s.
T2I_TRAIN_SCENES, T2I_DATA_SEED = 60_000, 0


@pytest.fixture(scope="module")
def bench():
    return shapesedit.cases()  # the benchmark itself: 250 cases


@pytest.fixture(scope="module")
def oracle_results(bench):
    return {"ground truth": shapesedit.evaluate(shapesedit.ground_truth_method(bench), bench, name="ground truth"),
            "identity": shapesedit.evaluate(shapesedit.identity_method, bench, name="identity")}


def _noise_in_mask(image, source_prompt, target_prompt, *, generator, mask):
    return (image + 0.5 * torch.randn(image.shape, generator=generator) * mask).clamp(-1, 1)


# ----------------------------------------------------------------------------------------------
# The cases
# ----------------------------------------------------------------------------------------------

def test_cases_are_balanced_across_kinds(bench):
    assert len(bench) == 250 >= 200
    kinds = [shapesedit.kind_of(c) for c in bench]
    assert {k: kinds.count(k) for k in shapes.EDIT_KINDS} == {k: 50 for k in shapes.EDIT_KINDS}
    assert [c.extra["index"] for c in bench] == list(range(250))


def test_cases_are_deterministic_by_seed(bench):
    again = shapesedit.cases(30)
    assert [c.source for c in again] == [c.source for c in bench[:30]]  # a prefix of the benchmark
    assert [c.edit for c in again] == [c.edit for c in bench[:30]]
    assert all(torch.equal(a.target_image, b.target_image) and torch.equal(a.mask, b.mask) for a, b in zip(again, bench))
    other = shapesedit.cases(30, seed=1)
    assert sum(a.source == b.source for a, b in zip(other, again)) == 0
    with pytest.raises(CourseInputError, match="n must be"):
        shapesedit.cases(0)


def test_cases_are_held_out_from_training(bench):
    # 'test' split: no held-out colour-shape pair in the source or the target, and no source scene
    # is one of the scenes the text-to-image UNet trained on.
    for c in bench:
        assert not set(c.source.pairs() + c.target.pairs()) & set(shapes.HELDOUT_PAIRS)
    train = set(shapes.sample_scenes(T2I_TRAIN_SCENES, split="train",
                                     generator=torch.Generator().manual_seed(T2I_DATA_SEED)))
    assert not {c.source for c in bench} & train
    assert not {c.target for c in bench} & train


def test_ground_truth_differs_from_source_only_inside_the_mask(bench):
    for c in bench:
        assert torch.equal(c.source_image[:, ~c.mask], c.target_image[:, ~c.mask]), c.instruction
        assert not torch.equal(c.source_image[:, c.mask], c.target_image[:, c.mask]), c.instruction
        assert (~c.mask).any(), "every case needs locked pixels to score"
        assert c.mask.shape == c.source_image.shape[1:] and c.mask.dtype == torch.bool
        assert shapes.parse_caption(c.target_caption)["objects"] == [
            {k: o[k] for k in ("colour", "shape", "position", "row", "col")} for o in c.target.describe()["objects"]]


# ----------------------------------------------------------------------------------------------
# The scores
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(32, 32), (17, 23), (12, 12)])
def test_ssim_map_equals_scikit_image(size, worst):
    g = torch.Generator().manual_seed(sum(size))
    x = torch.rand(3, *size, generator=g, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    mean, full = structural_similarity(x.numpy(), y.numpy(), gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=1.0, channel_axis=0, full=True)
    ours = shapesedit.ssim_map(x, y)
    assert ours.shape == x.shape
    diff = np.abs(ours.numpy() - full).max()
    worst("shapesedit.ssim_map vs skimage full map", diff)
    assert diff < 1e-12
    pad = (shapesedit.SSIM_WINDOW - 1) // 2  # skimage's mean leaves out the borders
    assert ours[:, pad:-pad, pad:-pad].mean().item() == pytest.approx(mean, abs=1e-12)
    keep = torch.rand(size, generator=g) < 0.4
    assert shapesedit.masked_ssim(x, y, keep) == pytest.approx(full.mean(0)[keep.numpy()].mean(), abs=1e-12)
    assert shapesedit.masked_ssim(x, x, keep) == pytest.approx(1.0, abs=1e-12)


def test_capped_psnr_equals_the_oracles_below_the_cap():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 32, 32, generator=g, dtype=torch.float64)
    y = (x + 0.05 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    expected = peak_signal_noise_ratio(x.numpy(), y.numpy(), data_range=1.0)
    assert shapesedit.capped_psnr(x, y) == pytest.approx(expected, abs=1e-9)
    assert shapesedit.capped_psnr(x, y) == pytest.approx(metrics.psnr(2 * x - 1, 2 * y - 1), abs=1e-9)
    keep = torch.zeros(32, 32, dtype=torch.bool)
    keep[:10] = True
    assert shapesedit.capped_psnr(x, y, keep) == pytest.approx(
        peak_signal_noise_ratio(x[:, :10].numpy(), y[:, :10].numpy(), data_range=1.0), abs=1e-9)
    assert shapesedit.capped_psnr(x, x) == shapesedit.PSNR_CAP == 60.0
    assert shapesedit.capped_psnr(x, x + 1e-5) == 60.0  # 100 dB is "unchanged" too
    assert math.isnan(shapesedit.capped_psnr(x, y, torch.zeros(32, 32, dtype=torch.bool)))


def test_success_is_read_on_the_edited_region_only(bench):
    # the ground truth with a locked object's pixels spoiled: the edit is made (success) but the
    # scene is not right, and the locked figures drop.
    case = next(c for c in bench if c.edit.kind == "colour" and len(c.source.objects) >= 2)
    other = next(k for k, o in enumerate(case.source.objects) if k != case.edit.index)
    spoil = shapes.object_masks(case.source)[other]
    spoiled = torch.where(spoil, -case.target_image, case.target_image)
    s = shapesedit.score(spoiled, case)
    assert s["success"] and not s["scene_ok"]
    assert s["locked_psnr"] < 30 and s["locked_ssim"] < 0.95
    # the same colour on the wrong object is no success
    wrong = shapes.make_edit(case.source, shapes.Edit("colour", index=other, value=case.edit.value)
                             if case.source.objects[other].colour != case.edit.value
                             else shapes.Edit("shape", index=other, value=next(
                                 s for s in shapes.SHAPES if s != case.source.objects[other].shape)))
    assert not shapesedit.score(wrong.target_image, case)["success"]
    with pytest.raises(CourseInputError, match="shape"):
        shapesedit.score(case.target_image[:, :16], case)


# ----------------------------------------------------------------------------------------------
# evaluate() on oracle methods
# ----------------------------------------------------------------------------------------------

def test_ground_truth_method_scores_perfectly(oracle_results):
    s = oracle_results["ground truth"]["summary"]
    for group in [s["overall"], *s["by_kind"].values()]:
        assert group["success"] == group["scene_ok"] == 1.0
        assert group["locked_psnr"] == group["psnr_gt"] == shapesedit.PSNR_CAP
        assert group["locked_ssim"] == pytest.approx(1.0, abs=1e-12)
    assert set(s["by_kind"]) == set(shapes.EDIT_KINDS) and s["overall"]["n"] == 250


def test_identity_method_edits_nothing(oracle_results):
    s = oracle_results["identity"]["summary"]
    for kind in shapes.EDIT_KINDS:  # every kind changes something, so keeping the source never succeeds
        assert s["by_kind"][kind]["success"] == 0.0 and s["by_kind"][kind]["scene_ok"] == 0.0
    assert s["overall"]["locked_psnr"] == shapesedit.PSNR_CAP
    assert s["overall"]["locked_ssim"] == pytest.approx(1.0, abs=1e-12)
    assert s["overall"]["psnr_gt"] < 30


def test_noise_inside_the_mask_keeps_the_lock(bench):
    result = shapesedit.evaluate(_noise_in_mask, bench[:50], name="noise in mask", pass_mask=True)
    for r in result["records"]:
        assert r["locked_psnr"] == shapesedit.PSNR_CAP
        assert r["locked_ssim"] == pytest.approx(1.0, abs=1e-12)
        assert r["psnr_gt"] < shapesedit.PSNR_CAP
    # the same noise everywhere breaks it
    everywhere = shapesedit.evaluate(
        lambda image, s, t, *, generator: _noise_in_mask(image, s, t, generator=generator, mask=torch.ones(1)),
        bench[:50], name="noise everywhere")
    assert everywhere["summary"]["overall"]["locked_psnr"] < 20
    assert everywhere["summary"]["overall"]["locked_ssim"] < 0.5


def test_evaluate_seeds_batches_and_checks_outputs(bench):
    seen = []

    def record_seed(image, source_prompt, target_prompt, *, generator):
        seen.append(generator.initial_seed())
        return image

    shapesedit.evaluate(record_seed, bench[:5], name="seeds", seed=100)
    assert seen == [100, 101, 102, 103, 104]
    one = shapesedit.evaluate(_noise_in_mask, bench[:6], name="a", pass_mask=True, keep_images=True)
    again = shapesedit.evaluate(_noise_in_mask, bench[:6], name="a", pass_mask=True, keep_images=True)
    assert torch.equal(one["images"], again["images"])
    batched = shapesedit.evaluate(lambda images, s, t, *, generator, mask: images.flip(-1), bench[:6], name="b",
                                  pass_mask=True, batch_size=4, keep_images=True)
    assert torch.equal(batched["images"], torch.stack([c.source_image.flip(-1) for c in bench[:6]]))
    assert len(batched["records"]) == 6 and all(r["seconds"] >= 0 for r in batched["records"])
    with pytest.raises(CourseInputError, match="must return"):
        shapesedit.evaluate(lambda image, s, t, *, generator: image[None, :, :8], bench[:2], name="bad")
    with pytest.raises(CourseInputError, match="NaN"):
        shapesedit.evaluate(lambda image, s, t, *, generator: image * float("nan"), bench[:2], name="nan")
    with pytest.raises(CourseInputError, match="name"):
        shapesedit.evaluate(shapesedit.identity_method, bench[:2], name="")


def test_table_and_json_round_trip(oracle_results, tmp_path):
    results = [dict(oracle_results["identity"], name="sdedit"), oracle_results["ground truth"]]
    table = shapesedit.format_table(results)
    lines = table.splitlines()
    assert len(lines) == 4 and "success vs sdedit" in lines[0]
    assert "| ground truth | 250 | 100.0 % [98, 100] | 100.0 % | 60.0 | 1.000 | 60.0 |" in lines[3]
    assert lines[3].endswith("| +100.0 pp | +0.0 dB |")
    assert "| 0.0 % |" in shapesedit.format_table(results, kind="remove").splitlines()[2]
    assert shapesedit.format_kind_table(results).splitlines()[3].startswith("| ground truth | 100.0 % |")
    path = shapesedit.save_results(results, tmp_path / "r.json", command="python bench")
    back = shapesedit.load_results(path)
    assert [r["name"] for r in back] == ["sdedit", "ground truth"]
    assert back[1]["summary"] == results[1]["summary"] and back[1]["records"] == results[1]["records"]
    assert back[0]["run"]["command"] == "python bench" and back[0]["run"]["psnr_cap_db"] == 60.0
    assert shapesedit.format_table(back) == table
    # a row run on the first 50 cases only is set against the baseline on those 50 cases
    short = shapesedit.restrict(results[1], range(50))
    assert short["summary"]["overall"]["n"] == 50
    assert shapesedit.format_table([results[0], dict(short, name="short")]).splitlines()[3].startswith("| short | 50 |")
    with pytest.raises(CourseInputError, match="bench_shapesedit"):
        shapesedit.load_results(tmp_path / "missing.json")


def test_wilson_interval_equals_scipys_and_mcnemar_the_exact_binomial_test():
    from scipy import stats

    for k, n in ((40, 50), (0, 50), (50, 50), (197, 250), (3, 7)):
        ours = shapesedit.wilson_interval(k, n)
        theirs = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert ours == pytest.approx((theirs.low, theirs.high), abs=1e-12)
    low, high = shapesedit.wilson_interval(40, 50)
    assert 0.1 < high - low < 0.25  # n = 50 per kind: about +-11 points near 80 %
    records = lambda wins: {"records": [{"index": i, "success": w} for i, w in enumerate(wins)]}  # noqa: E731
    a = records([True] * 30 + [False] * 20)
    b = records([True] * 18 + [False] * 12 + [True] * 5 + [False] * 15)  # a alone right on 12, b alone on 5
    test = shapesedit.mcnemar(a, b)
    assert (test["a_only"], test["b_only"]) == (12, 5) and test["difference"] == pytest.approx(7 / 50)
    assert test["p_value"] == pytest.approx(stats.binomtest(12, 17, 0.5).pvalue, abs=1e-12)
    assert test["real"] == (test["p_value"] < 0.05)
    assert shapesedit.mcnemar(a, a)["p_value"] == 1.0
    first = shapesedit.mcnemar(a, records([False] * 20))  # a row run on the first 20 cases: paired on those
    assert (first["n"], first["a_only"], first["b_only"]) == (20, 20, 0)
    shifted = {"records": [{"index": i + 40, "success": True} for i in range(20)]}  # not a subset: refused
    with pytest.raises(CourseInputError, match="same cases"):
        shapesedit.mcnemar(a, shifted)
    with pytest.raises(CourseInputError, match="successes"):
        shapesedit.wilson_interval(51, 50)


def test_summaries_carry_success_intervals(oracle_results):
    overall = oracle_results["ground truth"]["summary"]["overall"]
    low, high = overall["success_ci"]
    assert high == 1.0 and 0.9 < low < 1.0  # 100 % of n cases: the interval still has width


def test_mask_iou_equals_scikit_learns_jaccard():
    from sklearn.metrics import jaccard_score

    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        a, b = torch.rand(32, 32, generator=g) > 0.6, torch.rand(32, 32, generator=g) > 0.7
        assert shapesedit.mask_iou(a, b) == pytest.approx(jaccard_score(b.flatten().numpy(), a.flatten().numpy()))
    empty = torch.zeros(4, 4, dtype=torch.bool)
    assert shapesedit.mask_iou(empty, empty) == 1.0
    with pytest.raises(CourseInputError, match="one shape"):
        shapesedit.mask_iou(empty, torch.zeros(3, 3, dtype=torch.bool))


def test_sign_test_is_scipys_exact_binomial_test_on_the_cases_that_differ():
    from scipy import stats

    records = lambda values: {"records": [{"index": i, "locked_psnr": v} for i, v in enumerate(values)]}  # noqa: E731
    a = records([30.0] * 12 + [20.0] * 5 + [25.0] * 8 + [float("nan")])
    b = records([25.0] * 12 + [25.0] * 5 + [25.0] * 8 + [30.0])  # a higher on 12, lower on 5, tied on 8, one NaN
    test = shapesedit.sign_test(a, b)
    assert (test["n"], test["a_higher"], test["b_higher"]) == (25, 12, 5)
    assert test["p_value"] == pytest.approx(stats.binomtest(12, 17, 0.5).pvalue, abs=1e-12)
    assert test["median_difference"] == 0.0 and test["real"] == (test["p_value"] < 0.05)
    flipped = shapesedit.sign_test(b, a)  # symmetric: the same p, the counts swapped
    assert (flipped["a_higher"], flipped["b_higher"], flipped["p_value"]) == (5, 12, test["p_value"])
    with pytest.raises(CourseInputError, match="no case"):
        shapesedit.sign_test(records([float("nan")] * 3), records([1.0] * 3))


# ----------------------------------------------------------------------------------------------
# The figure: success against locked PSNR, one point per row
# ----------------------------------------------------------------------------------------------

def test_success_psnr_points_are_the_records_intervals():
    from scipy import stats

    from course_lib import environment

    results = shapesedit.load_results(environment.DATA_DIR / "shapesedit_results.json")
    points = shapesedit.success_psnr_points(results)
    assert [p["name"] for p in points] == [r["name"] for r in results]
    for p, r in zip(points, results):
        wins = [bool(x["success"]) for x in r["records"]]
        psnr = np.array([x["locked_psnr"] for x in r["records"]], dtype=float)
        ci = stats.binomtest(sum(wins), len(wins)).proportion_ci(confidence_level=0.95, method="wilson")
        assert p["n"] == len(wins) and p["success"] == pytest.approx(np.mean(wins))
        assert (p["success_low"], p["success_high"]) == pytest.approx((ci.low, ci.high), abs=1e-4)
        assert p["locked_psnr"] == pytest.approx(psnr.mean(), abs=1e-6)
        half = stats.norm.ppf(0.975) * psnr.std(ddof=1) / np.sqrt(len(psnr))  # mean +- z s / sqrt(n)
        assert p["psnr_halfwidth"] == pytest.approx(half, abs=2e-3)
    styles = {p["name"]: (p["family"], p["variant"]) for p in points}
    assert styles["mask_locking (edit_friendly)"] == ("mask_locking", "edit_friendly")
    assert styles["sdedit"] == ("sdedit", "")
    assert styles["prompt_to_prompt (default, no local blend)"] == ("prompt_to_prompt", "default")
    assert styles["mask_locking (given mask: reference)"] == ("reference", "")
    with pytest.raises(CourseInputError, match="non-empty list"):
        shapesedit.success_psnr_points([])


def test_plot_success_psnr_draws_every_row_at_its_figures():
    import matplotlib.pyplot as plt

    from course_lib import environment

    results = shapesedit.load_results(environment.DATA_DIR / "shapesedit_results.json")
    fig = shapesedit.plot_success_psnr(results)
    top, bottom = fig.axes[:2]
    drawn = {c.get_label(): c.lines[0].get_xydata()[0] for c in top.containers}  # one errorbar per row
    for r in results:  # the upper panel: every row, at (success in %, locked PSNR)
        o = r["summary"]["overall"]
        assert drawn[r["name"]] == pytest.approx([100 * o["success"], o["locked_psnr"]])
    methods = {c.get_label() for c in bottom.containers}
    assert methods == {r["name"] for r in results if "reference" not in r["name"]}
    low, high = bottom.get_ylim()  # the enlarged panel holds every method's interval and the 35 dB target
    assert all(low <= r["summary"]["overall"]["locked_psnr"] - r["summary"]["overall"]["locked_psnr_ci_halfwidth"]
               and r["summary"]["overall"]["locked_psnr"] + r["summary"]["overall"]["locked_psnr_ci_halfwidth"] <= high
               for r in results if "reference" not in r["name"]) and high >= 35
    plt.close(fig)
    with pytest.raises(CourseInputError, match="target_success"):
        shapesedit.plot_success_psnr(results, target_success=90)
