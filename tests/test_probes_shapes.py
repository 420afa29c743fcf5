"""Probes of course_lib.shapes: bad and unusual inputs to every public function, and what each must do.

Each row of REFUSED is (what, a call, a regex the CourseInputError's message must match: it names the
parameter or says what to change). ACCEPTED rows are unusual inputs a user may reasonably pass (numpy
scalars, int seeds, a single name where a list is taken), checked against an independent result.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib import shapes
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")

RED = shapes.ShapeObject("circle", "red", 0, 0)
BLUE = shapes.ShapeObject("square", "blue", 1, 1)
ONE = shapes.Scene((RED,), "black")
TWO = shapes.Scene((RED, BLUE), "grey")
FULL = shapes.Scene((RED, BLUE, shapes.ShapeObject("triangle", "green", 2, 2)), "white")
IMAGE = shapes.render(TWO)
CAPTION = shapes.caption(TWO)


def _scene_dict(**changes):
    d = TWO.describe()
    d["objects"][0].update(changes)
    return d


REFUSED = [
    # objects and scenes
    ("shape unknown", lambda: shapes.ShapeObject("star", "red", 0, 0), "shape='star' is not known"),
    ("colour unknown", lambda: shapes.ShapeObject("circle", "purple", 0, 0), "colour='purple' is not known"),
    ("row outside the grid", lambda: shapes.ShapeObject("circle", "red", 3, 0), "row must be an int"),
    ("row negative", lambda: shapes.ShapeObject("circle", "red", -1, 0), "row must be an int"),
    ("col a float", lambda: shapes.ShapeObject("circle", "red", 0, 1.5), "col must be an int"),
    ("row a bool", lambda: shapes.ShapeObject("circle", "red", True, 0), "row must be an int"),
    ("half_size a string", lambda: shapes.ShapeObject("circle", "red", 0, 0, "big"), "half_size must be a finite number"),
    ("half_size NaN", lambda: shapes.ShapeObject("circle", "red", 0, 0, float("nan")), "half_size must be a finite"),
    ("half_size too big", lambda: shapes.ShapeObject("circle", "red", 0, 0, 0.5), r"half_size must be in"),
    ("dx outside the cell", lambda: shapes.ShapeObject("circle", "red", 0, 0, 0.11, 0.1), "dx and dy must be within"),
    ("dy infinite", lambda: shapes.ShapeObject("circle", "red", 0, 0, 0.11, 0.0, float("inf")), "dy must be a finite"),
    ("one object, not a tuple", lambda: shapes.Scene(RED), r"tuple of ShapeObject, e.g. Scene\(\(obj,\)"),
    ("objects an int", lambda: shapes.Scene(5), "objects must be a tuple of ShapeObject"),
    ("objects of the wrong type", lambda: shapes.Scene(("red circle",)), "ShapeObject instances"),
    ("four objects", lambda: shapes.Scene(FULL.objects + (shapes.ShapeObject("circle", "red", 0, 1),)), "at most 3 objects"),
    ("two objects in one cell", lambda: shapes.Scene((RED, shapes.ShapeObject("square", "blue", 0, 0))), "share a grid cell"),
    ("background unknown", lambda: shapes.Scene((RED,), "pink"), "background='pink' is not known"),
    ("from_dict of a list", lambda: shapes.Scene.from_dict([]), "from_dict takes a dict"),
    ("from_dict without objects", lambda: shapes.Scene.from_dict({"background": "black"}), "from_dict takes a dict"),
    ("from_dict, an object without row", lambda: shapes.Scene.from_dict(
        {"background": "black", "objects": [{"shape": "circle", "colour": "red", "col": 0}]}), "lacks row"),
    ("from_dict, a centre of one number", lambda: shapes.Scene.from_dict(_scene_dict(centre=0.5)), r"\(x, y\) pair"),
    ("from_dict, a NaN centre", lambda: shapes.Scene.from_dict(_scene_dict(centre=[float("nan"), 0.2])),
     "centre must be a finite number"),
    ("check_scene of a caption", lambda: shapes.check_scene(CAPTION), "must be a shapes.Scene"),
    ("check_scenes of one scene", lambda: shapes.check_scenes(ONE), "must be a list of shapes.Scene"),
    # sampling
    ("split unknown", lambda: shapes.sample_scenes(3, split="val"), "split='val' is not known"),
    ("n negative", lambda: shapes.sample_scenes(-1), "n must be an int >= 0"),
    ("n a float", lambda: shapes.sample_scenes(2.5), "n must be an int"),
    ("seed negative", lambda: shapes.sample_scenes(2, seed=-1), "seed must be an int >= 0"),
    ("seed None without a generator", lambda: shapes.sample_scenes(2, seed=None), "seed must be an int"),
    ("num_objects 0", lambda: shapes.sample_scenes(2, num_objects=0), "num_objects must be an int or a"),
    ("num_objects 4", lambda: shapes.sample_scenes(2, num_objects=4), "num_objects must be an int or a"),
    ("num_objects reversed", lambda: shapes.sample_scenes(2, num_objects=(3, 1)), "num_objects must be"),
    ("num_objects a string", lambda: shapes.sample_scenes(2, num_objects="2"), "num_objects must be"),
    ("num_objects of one item", lambda: shapes.sample_scenes(2, num_objects=(2,)), "num_objects must be"),
    ("no backgrounds", lambda: shapes.sample_scenes(2, backgrounds=[]), "backgrounds must name at least one"),
    ("background unknown", lambda: shapes.sample_scenes(2, backgrounds=["pink"]), "background='pink' is not known"),
    ("generator a string", lambda: shapes.sample_scenes(2, generator="0"), "generator must be a torch.Generator, an int"),
    ("generator a bool", lambda: shapes.sample_scenes(2, generator=True), "generator must be a torch.Generator"),
    ("split_generator, seed a float", lambda: shapes.split_generator(1.0, "train"), "seed must be an int"),
    # rendering
    ("size too small", lambda: shapes.render(ONE, size=4), "size must be an int >= 8"),
    ("size a float", lambda: shapes.render(ONE, size=32.0), "size must be an int"),
    ("size a bool", lambda: shapes.check_size(True), "size must be an int"),
    ("chunk 0", lambda: shapes.render([ONE], chunk=0), "chunk must be an int >= 1"),
    ("render an int", lambda: shapes.render(5), "list of shapes.Scene"),
    ("render a caption", lambda: shapes.render(CAPTION), "list of shapes.Scene"),
    ("object_masks of dicts", lambda: shapes.object_masks([ONE.describe()]), "list of shapes.Scene"),
    ("signed_distance, float ids", lambda: shapes.signed_distance(torch.tensor([0.0]), torch.tensor([[0.5, 0.5, 0.1]]), 8),
     "shape_id must be an integer tensor"),
    ("signed_distance, id 5", lambda: shapes.signed_distance(torch.tensor([5]), torch.tensor([[0.5, 0.5, 0.1]]), 8),
     "shape_id must hold indices 0..2"),
    ("signed_distance, geom of 2", lambda: shapes.signed_distance(torch.tensor([0]), torch.tensor([[0.5, 0.5]]), 8),
     r"geom must be a float tensor of shape \(1, 3\)"),
    ("signed_distance, NaN geom", lambda: shapes.signed_distance(torch.tensor([0]), torch.tensor([[0.5, float("nan"), 0.1]]), 8),
     "geom holds NaN"),
    ("changed_support of a caption", lambda: shapes.changed_support(CAPTION, TWO, 32), "source must be a shapes.Scene"),
    ("changed_support, size 2", lambda: shapes.changed_support(ONE, TWO, 2), "size must be an int >= 8"),
    # captions
    ("caption of a dict", lambda: shapes.caption(ONE.describe()), "scene must be a shapes.Scene"),
    ("phrasing unknown", lambda: shapes.caption(ONE, "long"), "phrasing='long' is not known"),
    ("relation of one object", lambda: shapes.caption(ONE, "relation"), "exactly two objects"),
    ("captions of a list", lambda: shapes.captions([ONE]), "scene must be a shapes.Scene"),
    ("random_captions, no phrasings", lambda: shapes.random_captions([ONE], phrasings=()), "at least one of"),
    ("random_captions, one scene", lambda: shapes.random_captions(ONE), "list of shapes.Scene"),
    ("random_captions, generator a float", lambda: shapes.random_captions([ONE], 0.5), "generator must be"),
    ("parse_caption of an int", lambda: shapes.parse_caption(5), "takes a str"),
    ("parse_caption of nothing", lambda: shapes.parse_caption(""), "cannot read"),
    ("parse_caption, no position", lambda: shapes.parse_caption("a red circle somewhere"), "cannot read"),
    ("parse_caption, unknown colour", lambda: shapes.parse_caption("a purple circle in the middle"), "colour='purple'"),
    ("parse_caption, unknown background", lambda: shapes.parse_caption("a red circle in the middle, on a pink background"),
     "background='pink'"),
    ("caption_objects, two in one cell", lambda: shapes.scene_from_caption("a red circle in the middle and a blue square "
                                                                            "in the middle"), "share a grid cell"),
    # data sets
    ("make_dataset, n negative", lambda: shapes.make_dataset(-1), "n must be an int >= 0"),
    ("make_dataset, size 4", lambda: shapes.make_dataset(2, size=4), "size must be an int >= 8"),
    ("make_dataset, no phrasings", lambda: shapes.make_dataset(2, phrasings=()), "at least one of"),
    ("make_dataset, split unknown", lambda: shapes.make_dataset(2, split="val"), "split='val'"),
    ("image_batches, batch 0", lambda: shapes.image_batches(0), "batch_size must be an int >= 1"),
    ("image_batches, heldout", lambda: shapes.image_batches(4, "heldout"), "'heldout' scenes are kept"),
    ("image_batches, split unknown", lambda: shapes.image_batches(4, "val"), "split='val'"),
    ("image_batches, num_objects 5", lambda: shapes.image_batches(4, num_objects=5), "num_objects must be"),
    ("image_batches data, generator a string", lambda: shapes.image_batches(2)("g"), "generator must be"),
    # edits
    ("edit kind unknown", lambda: shapes.Edit("grow", index=0), "edit kind='grow' is not known"),
    ("colour edit without value", lambda: shapes.Edit("colour", index=0), "needs index and value; value is missing"),
    ("edit index negative", lambda: shapes.Edit("remove", index=-1), "edit index must be an int >= 0"),
    ("edit index a float", lambda: shapes.Edit("remove", index=1.0), "edit index must be an int"),
    ("edit value a number", lambda: shapes.Edit("colour", index=0, value=3), "value must be a name"),
    ("add without obj", lambda: shapes.Edit("add"), "needs obj"),
    ("add of a caption", lambda: shapes.Edit("add", obj="a red circle"), r"obj=ShapeObject"),
    ("apply, index out of range", lambda: shapes.apply_edit(ONE, shapes.Edit("colour", index=2, value="blue")), "out of range"),
    ("apply, already red", lambda: shapes.apply_edit(ONE, shapes.Edit("colour", index=0, value="red")), "already red"),
    ("apply, unknown colour", lambda: shapes.apply_edit(ONE, shapes.Edit("colour", index=0, value="pink")), "colour='pink'"),
    ("apply, cell taken", lambda: shapes.apply_edit(ONE, shapes.Edit("add", obj=shapes.ShapeObject("square", "blue", 0, 0))),
     "is taken"),
    ("apply, add to a full scene", lambda: shapes.apply_edit(FULL, shapes.Edit("add", obj=shapes.ShapeObject("square", "blue", 0, 2))),
     "already holds 3 objects"),
    ("apply to a caption", lambda: shapes.apply_edit(CAPTION, shapes.Edit("remove", index=0)), "takes a Scene and an Edit"),
    ("instruction, index out of range", lambda: shapes.instruction(ONE, shapes.Edit("remove", index=3)), "out of range"),
    ("instruction of a no-op edit", lambda: shapes.instruction(ONE, shapes.Edit("colour", index=0, value="red")), "already red"),
    ("instruction of a dict", lambda: shapes.instruction(ONE, {"kind": "remove"}), "takes a Scene and an Edit"),
    ("read_instruction of an int", lambda: shapes.read_instruction(ONE, 3), "canonical instruction"),
    ("read_instruction, free words", lambda: shapes.read_instruction(ONE, "make it blue"), "is not a canonical instruction"),
    ("read_instruction of a caption", lambda: shapes.read_instruction(CAPTION, "remove it"), "scene must be a shapes.Scene"),
    ("caption_edit, the same scene", lambda: shapes.caption_edit(CAPTION, CAPTION), "the same scene"),
    ("caption_edit, two changes", lambda: shapes.caption_edit(CAPTION, CAPTION.replace("red", "green").replace("grey", "white")),
     "2 changes"),
    ("canonical_instruction, colour and shape", lambda: shapes.canonical_instruction(
        "a red circle in the middle", "a blue square in the middle"), "not one edit"),
    ("make_edit, size 4", lambda: shapes.make_edit(ONE, shapes.Edit("background", value="white"), 4), "size must be"),
    ("possible_edit_kinds of a caption", lambda: shapes.possible_edit_kinds(CAPTION), "scene must be a shapes.Scene"),
    ("random_edit, no kinds", lambda: shapes.random_edit(ONE, 0, ()), "at least one edit kind"),
    ("random_edit, kind unknown", lambda: shapes.random_edit(ONE, 0, ("grow",)), "edit kind='grow'"),
    ("random_edit, remove from one object", lambda: shapes.random_edit(ONE, 0, ("remove",)), "no edit of kinds"),
    ("random_edit, generator a string", lambda: shapes.random_edit(ONE, "seed"), "generator must be"),
    ("random_edit of a caption", lambda: shapes.random_edit(CAPTION), "scene must be a shapes.Scene"),
    ("edit_cases, n negative", lambda: shapes.edit_cases(-1), "n must be an int >= 0"),
    ("edit_cases, n a float", lambda: shapes.edit_cases(2.5), "n must be an int"),
    ("edit_cases, no kinds", lambda: shapes.edit_cases(2, kinds=()), "at least one edit kind"),
    ("edit_cases, remove with one object", lambda: shapes.edit_cases(5, kinds=("remove",), num_objects=1), "'remove' needs"),
    ("edit_cases, split unknown", lambda: shapes.edit_cases(2, split="val"), "split='val'"),
    ("edit_cases, seed negative", lambda: shapes.edit_cases(2, seed=-3), "seed must be an int >= 0"),
    # reading images back
    ("read_scene of an int tensor", lambda: shapes.read_scene(torch.zeros(3, 32, 32, dtype=torch.uint8)), "float tensor"),
    ("read_scene, not square", lambda: shapes.read_scene(torch.zeros(3, 32, 16)), r"shape \(3, S, S\)"),
    ("read_scene, a batch", lambda: shapes.read_scene(torch.zeros(2, 3, 32, 32)), r"shape \(3, S, S\)"),
    ("read_scene, NaN pixels", lambda: shapes.read_scene(torch.full((3, 32, 32), float("nan"))), "NaN or infinite"),
    ("read_scene, [0, 255] image", lambda: shapes.read_scene((IMAGE + 1) * 127.5), r"Convert first.*127.5"),
    ("read_scene, min_area negative", lambda: shapes.read_scene(IMAGE, min_area=-1), "min_area must be a finite number >= 0"),
    ("read_scene, min_area NaN", lambda: shapes.read_scene(IMAGE, min_area=float("nan")), "min_area must be a finite"),
    ("judge against an int", lambda: shapes.judge(IMAGE, 5), "expected must be a Scene, a caption"),
    ("judge against a dict without objects", lambda: shapes.judge(IMAGE, {"background": "grey"}), "expected must be"),
    ("judge, an object without its cell", lambda: shapes.judge(IMAGE, {"objects": [{"colour": "red", "shape": "circle"}]}),
     "needs colour, shape, row and col"),
    ("judge, an infinite image", lambda: shapes.judge(torch.full((3, 32, 32), float("inf")), TWO), "NaN or infinite"),
    ("judge, an unreadable caption", lambda: shapes.judge(IMAGE, "two red balls"), "cannot read"),
]


@pytest.mark.parametrize("what,call,match", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_with_a_clear_message(what, call, match):
    with pytest.raises(CourseInputError, match=match):
        call()


# ----------------------------------------------------------------------------------------------
# Unusual inputs that are right to accept, each against an independent result
# ----------------------------------------------------------------------------------------------

def test_numpy_scalars_are_numbers_and_ints():
    a = shapes.ShapeObject("circle", "red", np.int64(1), np.int32(2), np.float32(0.11), np.float64(0.01), np.float16(0))
    assert a.cell == (1, 2) and type(a.row) is int and type(a.half_size) is float
    assert shapes.render(shapes.Scene((a,)), np.int64(16)).shape == (3, 16, 16)
    assert shapes.sample_scenes(np.int64(5), seed=np.int64(2)) == shapes.sample_scenes(5, seed=2)
    assert shapes.sample_scenes(5, num_objects=np.int64(2)) == shapes.sample_scenes(5, num_objects=(2, 2))
    assert all(len(s.objects) == 2 for s in shapes.sample_scenes(20, num_objects=[2, 2]))
    assert torch.equal(shapes.split_generator(np.int64(3), "test").get_state(), shapes.split_generator(3, "test").get_state())
    assert shapes.apply_edit(TWO, shapes.Edit("remove", index=np.int64(1))) == shapes.Scene((RED,), "grey")
    assert [c.target_caption for c in shapes.edit_cases(np.int64(3), seed=np.int64(1))] == \
        [c.target_caption for c in shapes.edit_cases(3, seed=1)]
    assert shapes.read_scene(IMAGE, min_area=np.float32(4.0)) == shapes.read_scene(IMAGE)


def test_int_seeds_are_generators():
    assert shapes.sample_scenes(4, generator=7) == shapes.sample_scenes(4, generator=torch.Generator().manual_seed(7))
    scenes = shapes.sample_scenes(10, seed=1)
    assert shapes.random_captions(scenes, 3) == shapes.random_captions(scenes, torch.Generator().manual_seed(3))
    assert shapes.random_edit(TWO, 5) == shapes.random_edit(TWO, torch.Generator().manual_seed(5))
    data = shapes.image_batches(3, size=16)
    assert torch.equal(data(11)["x0"], data(torch.Generator().manual_seed(11))["x0"])


def test_a_single_name_where_names_are_taken():
    assert {s.background for s in shapes.sample_scenes(20, backgrounds="white")} == {"white"}
    assert shapes.random_captions([ONE, TWO], 0, phrasings="objects") == [shapes.caption(ONE, "objects"),
                                                                          shapes.caption(TWO, "objects")]
    assert shapes.random_edit(TWO, 0, "colour").kind == "colour"
    assert {c.edit.kind for c in shapes.edit_cases(3, kinds="background")} == {"background"}


def test_iterables_of_scenes_and_empty_lists():
    assert torch.equal(shapes.render(s for s in (ONE, TWO)), shapes.render([ONE, TWO]))
    assert torch.equal(shapes.render((ONE, TWO)), shapes.render([ONE, TWO]))
    assert shapes.render([]).shape == (0, 3, 32, 32)
    assert shapes.object_masks([], 16).shape == (0, shapes.MAX_OBJECTS, 16, 16)
    assert shapes.sample_scenes(0) == [] and shapes.edit_cases(0) == [] and shapes.random_captions([]) == []
    assert len(shapes.make_dataset(0)) == 0


def test_empty_scenes_and_phrasings_that_do_not_apply():
    empty = shapes.Scene((), "grey")
    assert shapes.caption(empty) == "an empty grey background" and shapes.parse_caption(shapes.caption(empty)) == \
        {"background": "grey", "objects": []}
    assert shapes.object_masks(empty).shape == (0, 32, 32)
    assert shapes.possible_edit_kinds(empty) == ["background", "add"]
    # "relation" applies to two-object scenes only: one object falls back to "full", as documented
    assert shapes.random_captions([ONE], 0, phrasings=("relation",)) == [shapes.caption(ONE, "full")]


def test_from_dict_reads_what_describe_wrote_and_defaults_the_rest():
    for scene in shapes.sample_scenes(20, seed=4):
        assert shapes.Scene.from_dict(scene.describe()) == shapes.Scene.from_dict(scene.describe())
        back = shapes.Scene.from_dict(scene.describe())
        assert [o.cell for o in back.objects] == [o.cell for o in scene.objects]
        assert all(abs(a.dx - b.dx) < 1e-6 and abs(a.half_size - b.half_size) < 1e-6 for a, b in zip(back.objects, scene.objects))
    plain = shapes.Scene.from_dict({"background": "white", "objects": [{"shape": "square", "colour": "blue", "row": 2, "col": 1}]})
    assert plain == shapes.Scene((shapes.ShapeObject("square", "blue", 2, 1),), "white")


def test_signed_distance_is_the_closed_form():
    size, (cx, cy, r) = 16, (0.5, 0.25, 0.125)
    d = shapes.signed_distance(torch.tensor([0, 1]), torch.tensor([[cx, cy, r]] * 2), size)
    coords = torch.arange(size, dtype=torch.float64) + 0.5
    x, y = coords[None, :] - cx * size, coords[:, None] - cy * size
    assert torch.allclose(d[0].double(), torch.sqrt(x**2 + y**2) - r * size, atol=1e-5)
    assert torch.allclose(d[1].double(), torch.maximum(x.abs(), y.abs()) - r * size, atol=1e-5)
    # the same formula in numpy, as read_scene uses it
    assert np.allclose(shapes.shape_distance(2, x.numpy(), y.numpy(), r * size, np),
                       shapes.shape_distance(2, x, y, r * size, torch).numpy())
    assert shapes.signed_distance(torch.zeros(0, dtype=torch.long), torch.zeros(0, 3), 8).shape == (0, 8, 8)


def test_changed_support_of_identical_scenes_is_empty_and_instruction_round_trips():
    assert not shapes.changed_support(TWO, TWO, 32).any()
    for case in shapes.edit_cases(20, seed=9):
        read = shapes.read_instruction(case.source, case.instruction)  # an added object gets the default size
        assert (read.kind, read.index, read.value) == (case.edit.kind, case.edit.index, case.edit.value)
        assert read.obj is None or (read.obj.noun, read.obj.cell) == (case.edit.obj.noun, case.edit.obj.cell)
        assert shapes.instruction(case.source, case.edit) == case.instruction


def test_read_scene_accepts_a_decoders_overshoot_and_blank_images():
    overshoot = (IMAGE * 1.2).clamp(-1.4, 1.4)  # within RANGE_SLACK of [-1, 1]: clipped, then read
    assert shapes.judge(overshoot, TWO).ok
    assert shapes.read_scene(torch.full((3, 32, 32), -1.0)) == shapes.Scene((), "black")
    assert shapes.read_scene(torch.ones(3, 8, 8)) == shapes.Scene((), "white")


def test_helpers_made_public_for_the_language_package():
    assert shapes.join_phrases([]) == "" and shapes.join_phrases(["a"]) == "a"
    assert shapes.join_phrases(["a", "b", "c"]) == "a, b and c"
    caption = "a blue square in the middle and a red circle in the top left"  # not in reading order
    objects = shapes.caption_objects(caption)
    assert [o.noun for o in objects] == ["blue square", "red circle"] and shapes.objects_phrase(objects) == caption
    assert shapes.cell_centre(0, 2) == (pytest.approx(5 / 6), pytest.approx(1 / 6))
    assert shapes.check_num_objects(2) == (2, 2) and shapes.check_num_objects((1, 3)) == (1, 3)
    assert math.isclose(sum(shapes.cell_centre(1, 1)), 1.0)
