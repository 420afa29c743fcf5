"""The shapes world: rendering, captions, held-out pairs, and edits whose ground truth is exact."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib import shapes
from course_lib.validation import CourseInputError


# Small tensors: on a shared 2-core machine a second torch thread mostly waits (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scenes():
    return shapes.sample_scenes(400, seed=11, split="test")


@pytest.fixture(scope="module")
def cases():
    return shapes.edit_cases(100, seed=5)


# ----------------------------------------------------------------------------------------------
# Sampling and rendering
# ----------------------------------------------------------------------------------------------

def test_sampling_is_deterministic_by_seed_and_split():
    a = shapes.sample_scenes(50, seed=3)
    assert a == shapes.sample_scenes(50, seed=3)
    assert a != shapes.sample_scenes(50, seed=4)
    assert a != shapes.sample_scenes(50, seed=3, split="test")
    assert torch.equal(shapes.render(a), shapes.render(shapes.sample_scenes(50, seed=3)))
    d1, d2 = shapes.make_dataset(20, seed=1), shapes.make_dataset(20, seed=1)
    assert torch.equal(d1.images, d2.images) and d1.captions == d2.captions


def test_heldout_pairs_never_appear_in_training_draws():
    for split in ("train", "test"):
        pairs = {p for s in shapes.sample_scenes(3000, seed=0, split=split) for p in s.pairs()}
        assert not pairs & set(shapes.HELDOUT_PAIRS)
        assert pairs == set(shapes.TRAIN_PAIRS)  # every allowed pair does appear
    for scene in shapes.sample_scenes(300, seed=0, split="heldout"):
        assert set(scene.pairs()) & set(shapes.HELDOUT_PAIRS)
    # images without captions (the VAE's) may hold every pair; the other draws are unchanged
    everything = shapes.sample_scenes(3000, seed=0, include_heldout=True)
    assert {p for s in everything for p in s.pairs()} == set(shapes.ALL_PAIRS)
    plain = shapes.sample_scenes(3000, seed=0)
    assert all(len(a.objects) == len(b.objects) and a.background == b.background for a, b in zip(everything, plain))
    g = torch.Generator().manual_seed(0)
    for scene in shapes.sample_scenes(300, seed=1):
        target = shapes.apply_edit(scene, shapes.random_edit(scene, g))
        assert not set(target.pairs()) & set(shapes.HELDOUT_PAIRS)


def test_sampling_covers_the_vocabulary(scenes):
    objects = [o for s in scenes for o in s.objects]
    assert {o.cell for o in objects} == set(shapes.POSITIONS)
    assert {s.background for s in scenes} == set(shapes.BACKGROUNDS)
    assert {len(s.objects) for s in scenes} == {1, 2, 3}
    assert all(len(s.objects) == 1 for s in shapes.sample_scenes(20, seed=0, num_objects=1))


def test_render_range_shape_and_pure_colours(scenes):
    images = shapes.render(scenes[:50])
    assert images.shape == (50, 3, 32, 32) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    # a pixel at the centre of a circle shows the object's colour exactly; a corner shows the background
    scene = shapes.Scene((shapes.ShapeObject("circle", "blue", 1, 1),), "white")
    image = shapes.render(scene, size=48)
    assert torch.allclose(image[:, 24, 24], torch.tensor(shapes.COLOURS["blue"]) * 2 - 1)
    assert torch.equal(image[:, 0, 0], torch.tensor(shapes.BACKGROUNDS["white"]) * 2 - 1)


def test_rendered_area_matches_the_geometry():
    # sum of coverage ~ the shape's area (circle pi r^2, square 4 r^2, triangle 2 r^2), in pixels
    size, half = 96, 0.12
    r = half * size
    expected = {"circle": math.pi * r**2, "square": 4 * r**2, "triangle": 2 * r**2}
    for shape, area in expected.items():
        scene = shapes.Scene((shapes.ShapeObject(shape, "red", 1, 1, half),), "black")
        got = shapes.object_masks(scene, size, soft=True).sum().item()
        assert got == pytest.approx(area, rel=0.01), shape


def test_object_masks_are_disjoint_and_explain_the_image(scenes):
    masks = shapes.object_masks(scenes, soft=True)  # (B, K, S, S)
    assert masks.shape == (len(scenes), shapes.MAX_OBJECTS, 32, 32)
    assert ((masks > 0).sum(1) <= 1).all()  # objects never share a pixel at 32 px
    images = shapes.render(scenes)
    outside = (masks.sum(1) == 0)[:, None].expand_as(images)
    bg = torch.stack([torch.tensor(shapes.BACKGROUNDS[s.background]) for s in scenes]) * 2 - 1
    assert torch.equal(images[outside], bg[:, :, None, None].expand_as(images)[outside])
    one = shapes.object_masks(scenes[0])
    assert one.shape == (len(scenes[0].objects), 32, 32) and one.dtype == torch.bool


def test_other_sizes_render():
    scene = shapes.sample_scenes(1, seed=2)[0]
    for size in (8, 16, 64):
        assert shapes.render(scene, size).shape == (3, size, size)


# ----------------------------------------------------------------------------------------------
# Captions
# ----------------------------------------------------------------------------------------------

def test_captions_agree_with_the_structure(scenes):
    for scene in scenes:
        described = scene.describe()
        for phrasing in ("full", "objects", "background_first"):
            parsed = shapes.parse_caption(shapes.caption(scene, phrasing))
            assert [(o["colour"], o["shape"], o["row"], o["col"]) for o in parsed["objects"]] == \
                   [(o["colour"], o["shape"], o["row"], o["col"]) for o in described["objects"]]
            assert parsed["background"] == (None if phrasing == "objects" else scene.background)


def test_example_captions():
    scene = shapes.Scene((shapes.ShapeObject("square", "blue", 0, 1), shapes.ShapeObject("triangle", "green", 2, 1)), "white")
    assert shapes.caption(scene) == "a blue square at the top and a green triangle at the bottom, on a white background"
    assert shapes.caption(scene, "relation") == "a blue square above a green triangle"
    assert shapes.caption(scene, "background_first").startswith("a white background with a blue square")
    one = shapes.Scene((shapes.ShapeObject("circle", "red", 1, 0),), "black")
    assert shapes.caption(one, "objects") == "a red circle on the left"
    assert "relation" not in shapes.captions(one)
    side = shapes.Scene((shapes.ShapeObject("circle", "red", 0, 2), shapes.ShapeObject("square", "blue", 2, 0)), "grey")
    assert shapes.caption(side, "relation") == "a blue square to the left of a red circle"


def test_scene_roundtrip_through_describe(scenes):
    for scene in scenes[:50]:
        back = shapes.Scene.from_dict(scene.describe())
        assert torch.allclose(shapes.render(back), shapes.render(scene), atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Edits: exact ground truth
# ----------------------------------------------------------------------------------------------

def test_edit_changes_pixels_only_inside_the_mask(cases):
    for case in cases:
        changed = (case.source_image != case.target_image).any(0)
        assert not (changed & ~case.mask).any(), case.instruction  # bitwise equal outside the mask
        assert changed.any(), case.instruction  # and the edit does something
        assert torch.equal(case.source_image, shapes.render(case.source))
        assert torch.equal(case.target_image, shapes.render(case.target))


def test_edit_masks_are_the_supports_of_what_changed(cases):
    for case in cases:
        src = shapes.object_masks(case.source)
        tgt = shapes.object_masks(case.target)
        e = case.edit
        if e.kind in ("colour", "remove"):
            expected = src[e.index]
        elif e.kind == "shape":
            expected = src[e.index] | tgt[[o.cell for o in case.target.objects].index(case.source.objects[e.index].cell)]
        elif e.kind == "add":
            expected = tgt[[o.cell for o in case.target.objects].index(e.obj.cell)]
        else:
            expected = shapes.object_masks([case.source], soft=True)[0].sum(0) < 1
        assert torch.equal(case.mask, expected), case.instruction


def test_edit_captions_agree_with_the_target_structure(cases):
    for case in cases:
        assert case.source_caption == shapes.caption(case.source)
        assert case.target_caption == shapes.caption(case.target)
        src, tgt = case.source_caption.split(), case.target_caption.split()
        if case.edit.kind in ("colour", "shape", "background"):  # word swaps align token by token
            assert len(src) == len(tgt) and sum(a != b for a, b in zip(src, tgt)) == 1, case.instruction
        if case.edit.kind == "colour":
            assert case.target.objects[case.edit.index].colour == case.edit.value
            assert case.edit.value in case.instruction
        if case.edit.kind == "remove":
            assert len(case.target.objects) == len(case.source.objects) - 1


def test_edit_cases_are_balanced_and_deterministic(cases):
    kinds = [c.edit.kind for c in cases]
    assert all(kinds.count(k) == len(cases) // len(shapes.EDIT_KINDS) for k in shapes.EDIT_KINDS)
    again = shapes.edit_cases(10, seed=5)
    assert [c.target_caption for c in again] == [c.target_caption for c in cases[:10]]
    assert all(torch.equal(a.mask, b.mask) for a, b in zip(again, cases))
    # the benchmark's scenes are not the scenes training draws with the same seed
    train = set(shapes.sample_scenes(200, seed=5, split="train"))
    assert not train & {c.source for c in cases}


# ----------------------------------------------------------------------------------------------
# The judge
# ----------------------------------------------------------------------------------------------

def test_judge_reads_rendered_scenes_back(scenes):
    images = shapes.render(scenes[:150])
    results = [shapes.judge(image, scene) for image, scene in zip(images, scenes)]
    assert sum(r.ok for r in results) == len(results)
    heldout = shapes.sample_scenes(50, seed=1, split="heldout")
    assert all(shapes.judge(im, s).ok for im, s in zip(shapes.render(heldout), heldout))
    # from a caption too, and at other sizes
    assert all(shapes.judge(shapes.render(s, 64), shapes.caption(s)).ok for s in scenes[:20])


def test_judge_catches_wrong_attributes(cases):
    for case in cases[:40]:
        if case.edit.kind == "background":
            verdict = shapes.judge(case.source_image, case.target)
            assert verdict.background is False and not verdict.ok
            continue
        verdict = shapes.judge(case.source_image, case.target)
        assert not verdict.ok, case.instruction
        if case.edit.kind == "colour":
            assert not verdict.colour and verdict.shape
        if case.edit.kind == "shape":
            assert not verdict.shape and verdict.colour
        if case.edit.kind in ("add", "remove"):
            assert not verdict.count


def test_judge_survives_noise_and_blur(scenes):
    from scipy import ndimage

    g = torch.Generator().manual_seed(0)
    images = shapes.render(scenes[:100])
    noisy = (images + 0.1 * torch.randn(images.shape, generator=g)).clamp(-1, 1)
    assert sum(shapes.judge(im, s).ok for im, s in zip(noisy, scenes)) >= 98
    # a decoder's output is blurred: a Gaussian blur of 0.9 pixel must not change the verdict
    blurred = torch.from_numpy(ndimage.gaussian_filter(images.numpy(), sigma=(0, 0, 0.9, 0.9), mode="nearest"))
    assert sum(shapes.judge(im, s).ok for im, s in zip(blurred, scenes)) >= 98


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------

def test_bad_input_gets_clear_errors():
    with pytest.raises(CourseInputError, match="colour='purple' is not known"):
        shapes.ShapeObject("circle", "purple", 0, 0)
    with pytest.raises(CourseInputError, match="shape='star' is not known"):
        shapes.ShapeObject("star", "red", 0, 0)
    with pytest.raises(CourseInputError, match="row must be an int"):
        shapes.ShapeObject("circle", "red", 3, 0)
    with pytest.raises(CourseInputError, match="share a grid cell"):
        shapes.Scene((shapes.ShapeObject("circle", "red", 0, 0), shapes.ShapeObject("square", "blue", 0, 0)))
    with pytest.raises(CourseInputError, match="split='val' is not known"):
        shapes.sample_scenes(3, split="val")
    with pytest.raises(CourseInputError, match="size must be an int >= 8"):
        shapes.render(shapes.sample_scenes(1), size=4)
    scene = shapes.Scene((shapes.ShapeObject("circle", "red", 0, 0),), "black")
    with pytest.raises(CourseInputError, match="out of range"):
        shapes.apply_edit(scene, shapes.Edit("colour", index=2, value="blue"))
    with pytest.raises(CourseInputError, match="already red"):
        shapes.apply_edit(scene, shapes.Edit("colour", index=0, value="red"))
    with pytest.raises(CourseInputError, match="is taken"):
        shapes.apply_edit(scene, shapes.Edit("add", obj=shapes.ShapeObject("square", "blue", 0, 0)))
    with pytest.raises(CourseInputError, match="needs index and value"):
        shapes.Edit("shape", index=0)
    with pytest.raises(CourseInputError, match="exactly two objects"):
        shapes.caption(scene, "relation")
    with pytest.raises(CourseInputError, match="cannot read"):
        shapes.parse_caption("a red circle somewhere")
    with pytest.raises(CourseInputError, match="shape"):
        shapes.judge(torch.zeros(3, 32, 16), scene)
    with pytest.raises(CourseInputError, match="'remove' needs scenes of 2"):
        shapes.edit_cases(5, kinds=("remove",), num_objects=1)


def test_vocabulary_covers_every_caption(scenes):
    vocab = set(shapes.vocabulary())
    for scene in scenes[:200] + [shapes.Scene((), "grey")]:
        for text in shapes.captions(scene).values():
            assert set(text.replace(",", " , ").split()) <= vocab, text
