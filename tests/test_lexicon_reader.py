"""The writer's lexicon and reader (course_lib.language.lexicon, .reader) and the held-out scoring (.heldout).   [nb 09]"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

from course_lib import language, shapes
from course_lib.language import heldout, lexicon, reader
from course_lib.validation import CourseInputError


# ---------------------------------------------------------------------------------------------- OKLab
@pytest.mark.parametrize("rgb,lab", [  # Ottosson's OKLab of the sRGB primaries and white (CSS Color 4 uses the same)
    ((1.0, 0.0, 0.0), (0.627955, 0.224863, 0.125846)),
    ((0.0, 1.0, 0.0), (0.866440, -0.233888, 0.179498)),
    ((0.0, 0.0, 1.0), (0.452014, -0.032457, -0.311528)),
    ((1.0, 1.0, 1.0), (1.0, 0.0, 0.0)),
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
])
def test_oklab_matches_the_published_values(rgb, lab):
    np.testing.assert_allclose(lexicon.oklab(rgb), lab, atol=2e-4)


def test_oklab_orders_the_world_colours_around_the_hue_circle_as_cielab_does():
    from skimage.color import rgb2lab  # an independent perceptual space (CIELAB bends blue's hue; the order stays)

    def order(hues):
        return sorted(shapes.COLOURS, key=lambda c: hues[c] % 360)

    ok = {c: np.degrees(np.arctan2(*lexicon.oklab(rgb)[[2, 1]])) for c, rgb in shapes.COLOURS.items()}
    cie = {c: np.degrees(np.arctan2(*rgb2lab(np.array([[rgb]]))[0, 0][[2, 1]])) for c, rgb in shapes.COLOURS.items()}
    assert order(ok) == order(cie) == ["red", "yellow", "green", "blue"]


def test_oklab_refuses_what_is_not_srgb():
    for bad in ((1.2, 0, 0), (0, 0), (np.nan, 0, 0)):
        with pytest.raises(CourseInputError, match="sRGB"):
            lexicon.oklab(bad)


# ---------------------------------------------------------------------------------------------- the colour lexicon
def test_the_lexicon_holds_both_real_lists():
    import matplotlib.colors as mc

    names = lexicon.colour_lexicon()
    assert len(names) >= len(mc.XKCD_COLORS)
    assert {e.source for e in names.values()} == {"xkcd", "css4"}
    assert names["navy blue"].source == "xkcd" and names["darkslateblue"].source == "css4"


@pytest.mark.parametrize("name,world", [
    ("red", "red"), ("crimson", "red"), ("scarlet", "red"), ("forest green", "green"), ("emerald", "green"),
    ("navy", "blue"), ("cobalt", "blue"), ("sky blue", "blue"), ("lemon", "yellow"), ("gold", "yellow"),
    ("purple", None), ("orange", None), ("burnt orange", None), ("salmon", None), ("teal", None), ("black", None),
    ("amber", None),
])
def test_names_map_to_the_world_colour_a_person_means(name, world):
    assert lexicon.colour_of(name).world == world


def test_the_margin_rule_two_ways():
    for entry in lexicon.colour_lexicon().values():
        last = entry.name.split()[-1]
        if last in lexicon.COLOUR_CATEGORIES:  # rule 1: the survey's own category word
            assert entry.category == last and not entry.votes
        else:  # rule 2: at least MAJORITY of NEIGHBOURS named neighbours agree, else no category
            assert sum(n for _, n in entry.votes) == lexicon.NEIGHBOURS
            assert (entry.category is not None) == (entry.votes[0][1] >= lexicon.MAJORITY)
        assert entry.world == (entry.category if entry.category in shapes.COLOURS else None)


def test_refused_names_say_why_in_one_sentence():
    for name in ("purple", "amber", "grey", "salmon"):
        why = lexicon.why_not(lexicon.colour_of(name))
        assert why.count(".") == 1 and why.endswith("red, green, blue or yellow.") and name in why


def test_the_lexicon_split_is_fixed_and_keeps_the_training_words():
    names = lexicon.colour_names()
    train = lexicon.colour_names(split="train")
    held = lexicon.colour_names(split="heldout")
    assert sorted(train + held) == names and 0.4 < len(held) / len(names) < 0.6
    for ws in language.COLOUR_WORDS.values():
        assert all(lexicon.lexicon_split(w) == "train" for w in ws)
    assert lexicon.colour_names("blue", "heldout") and "navy" not in lexicon.colour_names("red")
    with pytest.raises(CourseInputError, match="world"):
        lexicon.colour_names("purple")


# ---------------------------------------------------------------------------------------------- typos
@functools.cache
def _dl(a: str, b: str) -> int:  # an independent (recursive) optimal-string-alignment distance
    if not a or not b:
        return len(a) + len(b)
    best = min(_dl(a[1:], b) + 1, _dl(a, b[1:]) + 1, _dl(a[1:], b[1:]) + (a[0] != b[0]))
    if len(a) > 1 and len(b) > 1 and a[0] == b[1] and a[1] == b[0]:
        best = min(best, _dl(a[2:], b[2:]) + 1)
    return best


def test_typo_distance_against_a_recursive_oracle():
    words = ["red", "reed", "dre", "green", "gerne", "circle", "cirlce", "ab", "", "triangle", "tirangel"]
    for a, b in itertools.product(words, repeat=2):
        assert language.typo_distance(a, b) == _dl(a, b), (a, b)


@pytest.mark.parametrize("typed,meant", [
    ("scralet", "scarlet"), ("cobolt", "cobalt"), ("triangel", "triangle"), ("bottm", "bottom"), ("yelow", "yellow"),
    ("bleu", "blue"), ("bule", "blue"), ("circel", "circle")])
def test_typos_of_slot_words_are_corrected(typed, meant):
    assert language.correct(typed) == meant


def test_short_words_and_ties_between_meanings_are_left_alone():
    assert language.correct("bed") == "bed"  # 3 letters: no typo budget
    assert language.correct("bloe") == "bloe"  # blue or blob (a circle): two drawable meanings, refused rather than guessed
    assert language.correct("gren") == "green"  # green or grey: the one the world draws (a grey object it refuses)
    assert [language.typo_budget(w) for w in ("red", "blue", "yellow", "scarlet")] == [0, 1, 1, 2]


# ---------------------------------------------------------------------------------------------- the reader
@pytest.mark.parametrize("text,model_text", [
    ("Could you draw me a cobalt sphere in the upper-left corner, thanks!", "a blue circle in the top left"),
    ("I'd like a scarlet ball on the left and a lemon box on the right",
     "a red circle on the left and a yellow square on the right"),
    ("a red ball to the left of a blue square", "a red circle to the left of a blue square"),
    ("a red ball on top of a blue box", "a red circle above a blue square"),
    ("2 navy cubes, top left and bottom right, against grey",
     "a blue square in the top left and a blue square in the bottom right, grey background"),
])
def test_the_reader_rewrites_into_the_world_words(text, model_text):
    assert language.read(text).model_text == model_text


def test_fillers_pass_and_change_nothing():
    plain = language.read("a red ball on the left").model_text
    for filler in ("hey, kindly render a red ball on the left, cheers", "i'd love a nice red ball on the left please",
                   "a red ball on the left, floating in the sky"):
        assert language.read(filler).model_text == plain and language.read(filler).refusal is None


@pytest.mark.parametrize("text,kind,instruction", [
    ("a purple ball", "colour", False), ("a salmon ball", "colour", False), ("a white ball", "colour", False),
    ("a red hexagon", "shape", False), ("a red balloon", "shape", False), ("a glorp ball", "slot", False),
    ("four red balls", "count", False), ("two red balls and two blue boxes", "count", False),
    ("a red ball on a navy background", "background", False),
    ("move the ball to the right", "action", True), ("make the square twice as big", "action", True)])
def test_the_reader_refuses_what_the_world_lacks_in_a_slot(text, kind, instruction):
    error = language.read(text, instruction=instruction).refusal
    assert error is not None and error.kind == kind
    assert isinstance(error, language.WriterError) and str(error).endswith(".") and "\n" not in str(error)


def test_model_input_of_an_edit_is_the_instruction_alone():
    source = "a red circle on the left, on a black background"
    text, refused = language.model_input(language.edit_prompt(source, "please paint the ball lemon"))
    assert text == language.SCENE + "make the circle yellow" and refused is None  # the world reads the scene


def test_the_writer_never_runs_its_model_on_a_refused_text(monkeypatch):
    writer = language.load_writer()
    monkeypatch.setattr(type(writer), "generate", lambda self, prompts, **kw: pytest.fail("the model ran"))
    for request in ("a purple ball", "four red balls", "a red hexagon"):
        with pytest.raises(language.WriterError):
            writer.caption(request)
    assert writer.answer(["a purple ball", "four red balls"]) == ["unsupported: purple", "too many objects"]
    with pytest.raises(language.WriterError, match="cannot move"):
        writer.target_caption("a red circle on the left", "move the ball up")
    with pytest.raises(language.WriterError, match="names no object"):
        writer.caption("hello there")


# ---------------------------------------------------------------------------------------------- held-out scoring
class _Oracle:  # answers every line right
    def __init__(self, refuse_all=False, constant=None):
        self.refuse_all, self.constant = refuse_all, constant
        self.requests = {r.request: r.expected for r in language.heldout_requests()}
        self.instructions = {(i.source_caption, i.instruction): i.expected for i in language.heldout_instructions()}

    def _give(self, expected):
        if self.refuse_all or expected.startswith("refuse:"):
            raise language.WriterError("refused")
        return self.constant or expected

    def caption(self, request):
        return self._give(self.requests[request])

    def target_caption(self, source, instruction):
        return self._give(self.instructions[(source, instruction)])


def test_scoring_a_perfect_a_refusing_and_a_constant_writer():
    perfect = language.heldout_table(language.score_heldout(_Oracle()))
    for part in ("requests", "instructions"):
        assert perfect[part]["exact"] == 1 and perfect[part]["silent wrong"] == 0
        assert perfect[part]["false refusals"] == 0 and perfect[part]["impossible refused"] == 1
    refusing = language.heldout_table(language.score_heldout(_Oracle(refuse_all=True)))
    assert refusing["requests"]["false refusals"] == 1 and refusing["requests"]["silent wrong"] == 0
    constant = language.heldout_table(language.score_heldout(_Oracle(constant="a red circle in the middle")))
    assert constant["requests"]["silent wrong"] > 0.5 and constant["requests"]["impossible refused"] == 1
    with pytest.raises(CourseInputError, match="caption"):
        language.score_heldout(object())


@pytest.mark.parametrize("edits", [1, 2])
def test_typo_requests_change_one_slot_word_by_exactly_that_many_edits(edits):
    cases = language.typo_requests(edits, seed=0)
    assert len(cases) >= 100
    for request, word, typed, _ in cases:
        assert language.typo_distance(typed, word) == edits and typed in request
    with pytest.raises(CourseInputError, match="edits"):
        language.typo_requests(3)


# ---------------------------------------------------------------------------------------------- referents
SCENE2 = shapes.scene_from_caption("a red circle on the left, a blue circle at the top and a red square in the middle, "
                                   "on a black background")


def test_a_full_canonical_instruction_is_read_as_the_world_reads_it():
    import torch

    g = torch.Generator().manual_seed(0)
    for scene in shapes.sample_scenes(200, seed=1, split="train"):
        edit = shapes.random_edit(scene, g)
        text = shapes.instruction(scene, edit)
        assert language.read_part(scene, text) == shapes.read_instruction(scene, text)  # the world's own reader


@pytest.mark.parametrize("phrase,index,kind", [
    ("the square", 2, None), ("the blue thing", 0, None), ("the thing on the left", 1, None),
    ("the red circle", 1, None), ("the circle", None, "ambiguous"), ("the red thing", None, "ambiguous"),
    ("the triangle", None, "not_in_scene"), ("the thing in the bottom right", None, "not_in_scene"),
    ("it", None, "ambiguous"), ("the", None, "invalid")])
def test_referents_are_found_or_refused(phrase, index, kind):
    if kind is None:
        assert language.find_referent(SCENE2, phrase) == index
    else:
        with pytest.raises(language.WriterError) as caught:
            language.find_referent(SCENE2, phrase)
        assert caught.value.kind == kind


@pytest.mark.parametrize("answer,kind", [
    ("make the square red", "no_change"), ("make the background black", "no_change"),
    ("add a red circle in the bottom left", "count"), ("make the square blue ; make the square green", "contradiction"),
    ("remove the square ; make the square blue", "contradiction"), ("paint the square blue", "invalid")])
def test_answers_the_world_refuses(answer, kind):
    with pytest.raises(language.WriterError) as caught:
        language.read_parts(SCENE2, answer, language.EDIT_JOINER)
    assert caught.value.kind == kind


def test_two_edits_apply_in_a_safe_order():
    edits = language.read_parts(SCENE2, "remove the thing on the left ; make the square yellow", language.EDIT_JOINER)
    target = language.apply_edits(SCENE2, edits)
    assert shapes.caption(target, "full") == "a blue circle at the top and a yellow square in the middle, on a black background"
    two = shapes.scene_from_caption("a red circle in the middle and a blue square on the left")
    with pytest.raises(language.WriterError, match="already in the middle"):
        language.read_part(two, "add a green triangle in the middle")
    one = shapes.scene_from_caption("a red circle in the middle")
    assert language.find_referent(one, "it") == 0
    with pytest.raises(language.WriterError, match="empty scene"):
        language.read_part(one, "remove it")


def test_target_verdicts_take_the_worse_of_requests_and_instructions():
    row = {"exact": 0.95, "false refusals": 0.01, "impossible refused": 1.0, "silent wrong": 0.01}
    table = {"requests": dict(row), "instructions": {**row, "exact": 0.80, "silent wrong": 0.05}}
    verdicts = {name: (value, met) for name, value, _, met in language.target_verdicts(table)}
    assert verdicts["requests exact"] == (0.95, True) and verdicts["instructions exact"] == (0.80, False)
    assert verdicts["silent wrong"] == (0.05, False) and verdicts["false refusals"] == (0.01, True)
    with pytest.raises(CourseInputError, match="heldout_table"):
        language.target_verdicts({})
