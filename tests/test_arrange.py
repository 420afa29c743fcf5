"""The reader's second pass (course_lib.language.arrange) and the phrasings it reads: checked against the world.   [nb 09]

Each case is a phrasing and the scene a person means, written as the world's canonical caption or
instruction(s); the world (shapes.scene_from_caption / shapes.caption, shapes.read_instruction,
shapes.apply_edit) is the oracle, so a case does not depend on the order the second pass writes.
"""

from __future__ import annotations

import pytest

from course_lib import language, shapes
from course_lib.language import arrange, lexicon, referents
from course_lib.language.words import EDIT_JOINER
from course_lib.validation import CourseInputError


def sorted_caption(text: str) -> str:
    """The world's caption of the scene a reader's text describes (reading order, the world's phrasing)."""
    for bg in shapes.BACKGROUNDS:
        text = text.replace(f", {bg} background", f", on a {bg} background")
    return shapes.caption(shapes.scene_from_caption(text), "full" if "background" in text else "objects")


# ------------------------------------------------------------------------------------------- hex codes
@pytest.mark.parametrize("code,world", [("#ff0000", "red"), ("#F00", "red"), ("#0000ff", "blue"), ("#ffff00", "yellow"),
                                        ("#008000", "green"), ("#000080", "blue"), ("#800080", None), ("#ffa500", None)])
def test_hex_codes_are_placed_by_the_survey_neighbours(code, world):
    entry = lexicon.hex_colour(code)
    assert entry.source == "hex" and entry.world == world


def test_hex_codes_agree_with_the_survey_names_of_the_world_colours():
    # an independent labelling: the survey's people named these RGBs "... red", "... green", ... (rule 1); rule 2 on
    # their hex codes (which leaves no name out) should mostly give the same world colour
    entries = [e for e in lexicon.colour_lexicon().values() if e.source == "xkcd" and not e.votes and e.world]
    codes = ["#" + "".join(f"{round(c * 255):02x}" for c in e.rgb) for e in entries]
    agree = sum(lexicon.hex_colour(code).world == e.world for code, e in zip(codes, entries)) / len(entries)
    assert len(entries) > 150 and agree > 0.8  # 85 %: rule 2 and the survey's own names disagree near the borders


@pytest.mark.parametrize("bad", ["#12345", "ff0000", "#gg0000", "red"])
def test_what_is_not_a_hex_code_is_none(bad):
    assert lexicon.hex_colour(bad) is None


def test_hex_colour_refuses_a_non_string():
    with pytest.raises(CourseInputError, match="code must be a string"):
        lexicon.hex_colour(0xFF0000)


# ------------------------------------------------------------------------------------------- requests
@pytest.mark.parametrize("text,meant", [
    ("circle, top left, colour: red", "a red circle in the top left"),
    ("please i want circle red in middle", "a red circle in the middle"),
    ("#ff0000 circle, top left", "a red circle in the top left"),
    ("yellow sq ctr pls", "a yellow square in the middle"),
    ("green circle at 3 o'clock", "a green circle on the right"),
    ("at 10 o'clock, a blue ball", "a blue circle in the top left"),
    ("first row third column: a blue square", "a blue square in the top right"),
    ("top row, far left: blue circle", "a blue circle in the top left"),
    ("in the north-east corner a cobalt square", "a blue square in the top right"),
    ("put a square in the bottom left and make it red", "a red square in the bottom left"),
    ("three yellow circles along the top row",
     "a yellow circle in the top left, a yellow circle at the top and a yellow circle in the top right"),
    ("3 red squares down the left side",
     "a red square in the top left, a red square on the left and a red square in the bottom left"),
    ("a red, a green and a blue circle in the top row, left to right",
     "a red circle in the top left, a green circle at the top and a blue circle in the top right"),
    ("top row: red, green, blue circles, left to right",
     "a red circle in the top left, a green circle at the top and a blue circle in the top right"),
    ("squares: blue top left, yellow bottom right", "a blue square in the top left and a yellow square in the bottom right"),
    ("2 green circles, top right + bottom right", "a green circle in the top right and a green circle in the bottom right"),
    ("both top corners: a red triangle in each", "a red triangle in the top left and a red triangle in the top right"),
    ("3 dots: yellow at the top, yellow on the left, red on the right",
     "a yellow circle at the top, a yellow circle on the left and a red circle on the right"),
    ("bottom row: red circle left, green circle centre, blue circle right",
     "a red circle in the bottom left, a green circle at the bottom and a blue circle in the bottom right"),
    ("three blue triangles on the diagonal from the top right to the bottom left",
     "a blue triangle in the top right, a blue triangle in the middle and a blue triangle in the bottom left"),
    ("(1) green triangle top right (2) red circle bottom left",
     "a green triangle in the top right and a red circle in the bottom left"),
    ("bg: black | obj: yellow square, bottom left", "a yellow square in the bottom left, on a black background"),
    ("on a black cloth, a ruby red ball in the middle", "a red circle in the middle, on a black background"),
    ("a green square in the bottom left, no wait, the bottom right", "a green square in the bottom right"),
    ("a yellow ball up top, sorry I meant at the bottom", "a yellow circle at the bottom"),
    ("a red circle in the top left, scratch that, blue", "a blue circle in the top left"),
    ("halfway down the left-hand edge, a blue box", "a blue square on the left"),
    ("a green triangle in the middle of the bottom edge", "a green triangle at the bottom"),
    ("bg: white / obj: green circle / pos: top left", "a green circle in the top left, on a white background"),
    ("a yellow ball in the top right like a moon", "a yellow circle in the top right"),
    ("a blue square, to the right", "a blue square on the right"),
    ("right then: a green ball, bottom middle", "a green circle at the bottom"),
    ("a trio of red squares along the bottom",
     "a red square in the bottom left, a red square at the bottom and a red square in the bottom right"),
    ("the left column: green triangles",
     "a green triangle in the top left, a green triangle on the left and a green triangle in the bottom left"),
    ("the top row full of yellow dots",
     "a yellow circle in the top left, a yellow circle at the top and a yellow circle in the top right"),
    ("Step 2: a blue triangle in the middle", "a blue triangle in the middle"),
    ("Over on the right, a red square.", "a red square on the right"),
    ("ok, stay in the top row, a green square in the middle of it", "a green square at the top"),
])
def test_the_second_pass_writes_what_a_person_means(text, meant):
    reading = language.read(text)
    assert reading.refusal is None
    assert sorted_caption(reading.model_text) == meant


@pytest.mark.parametrize("text,meant", [
    ("a red square, and under that a blue triangle", "a red square above a blue triangle"),
    ("below a red circle there is a green circle", "a red circle above a green circle"),
    ("a blue box and a yellow box to its right", "a blue square to the left of a yellow square"),
    ("above: green square. below: blue triangle.", "a green square above a blue triangle"),
    ("a red ball to the left of a blue square", "a red circle to the left of a blue square"),
    ("a blue square to the right of a red ball", "a red circle to the left of a blue square"),
])
def test_relations_come_out_as_the_world_writes_them(text, meant):
    assert language.read(text).model_text == meant


@pytest.mark.parametrize("text", ["a green triangle in every cell of the grid", "red squares in all the corners",
                                  "the whole middle row and the whole top row filled with red squares"])
def test_more_objects_than_a_scene_holds_are_refused_however_said(text):
    assert language.read(text).refusal.kind == "count"


@pytest.mark.parametrize("text", ["a red circle and a blue square", "a red ball, a ball", "two red circles"])
def test_what_the_words_do_not_pin_down_goes_to_the_model_as_read(text):
    # no places for two objects: the second pass leaves the first pass's words (no invented cells)
    assert not any(p in language.read(text).model_text for p in shapes.POSITION_PHRASES.values())


# --------------------------------------------------------------------------------------- instructions
SCENE_1 = "a green triangle in the top left, on a black background"
SCENE_2 = "a blue circle at the top and a red circle at the bottom, on a white background"
SCENE_3 = "a yellow triangle on the left, a yellow circle on the right and a green square at the bottom, on a grey background"
SCENE_4 = "a yellow triangle in the top left and a yellow triangle in the top right, on a white background"
SCENE_5 = "a blue circle at the top, a red square in the middle and a blue circle in the bottom left, on a grey background"


@pytest.mark.parametrize("source,instruction,canonical", [
    (SCENE_1, "triangle -> cherry red", "make the green triangle in the top left red"),
    (SCENE_1, "Triangle: red.", "make the green triangle in the top left red"),
    (SCENE_1, "make the triangle a yellow circle",
     "make the green triangle in the top left yellow ; turn the green triangle in the top left into a circle"),
    (SCENE_1, "make it yellow and add a red square in the bottom right",
     "make the green triangle in the top left yellow ; add a red square in the bottom right"),
    (SCENE_1, "square instead of triangle", "turn the green triangle in the top left into a square"),
    (SCENE_2, "the one at the top, could it be navy?", "make the blue circle at the top blue"),
    (SCENE_2, "delete the blue one, then put a yellow triangle in the top right",
     "remove the blue circle at the top ; add a yellow triangle in the top right"),
    (SCENE_2, "background grey instead of white", "make the background grey"),
    (SCENE_2, "change the background from white to black", "make the background black"),
    (SCENE_3, "background should be black, not grey", "make the background black"),
    (SCENE_3, "no square at the bottom please", "remove the green square at the bottom"),
    (SCENE_3, "the yellow circle has to go", "remove the yellow circle on the right"),
    (SCENE_3, "circle on the right -> red", "make the yellow circle on the right red"),
    (SCENE_2, "top right: add a blue triangle", "add a blue triangle in the top right"),
    (SCENE_4, "make the triangle on the left red", "make the yellow triangle in the top left red"),
    (SCENE_4, "the right triangle has to go", "remove the yellow triangle in the top right"),
    (SCENE_5, "make the lower circle green", "make the blue circle in the bottom left green"),
    (SCENE_4, "make both triangles blue",
     "make the yellow triangle in the top left blue ; make the yellow triangle in the top right blue"),
    (SCENE_5, "turn the circles into squares",
     "turn the blue circle at the top into a square ; turn the blue circle in the bottom left into a square"),
    (SCENE_5, "the red square, make that one yellow", "make the red square in the middle yellow"),
    (SCENE_5, "make the square green and then turn it into a triangle",
     "make the red square in the middle green ; turn the red square in the middle into a triangle"),
    (SCENE_5, "the square - could it be round? a circle?", "turn the red square in the middle into a circle"),
    (SCENE_4, "could we also have a yellow triangle at the bottom", "add a yellow triangle at the bottom"),
    (SCENE_4, "put a green ball between them, in the middle", "add a green circle in the middle"),
    (SCENE_4, "drop a red box into the bottom left corner", "add a red square in the bottom left"),
    (SCENE_4, "put a blue ball at the bottom, no wait, in the bottom right", "add a blue circle in the bottom right"),
    (SCENE_5, "Task 4: switch the background to white.", "make the background white"),
    (SCENE_5, "swap the grey background out for black", "make the background black"),
    (SCENE_5, "make the grey background white", "make the background white"),
    (SCENE_5, "black behind everything, please", "make the background black"),
    (SCENE_5, "take the grey away and go white", "make the background white"),
    (SCENE_5, "cancel the red square", "remove the red square in the middle"),
    (SCENE_5, "the red square: make it blue, over", "make the red square in the middle blue"),
])
def test_instructions_are_split_into_edits_the_world_reads(source, instruction, canonical):
    text, refused = language.model_input(language.edit_prompt(source, instruction))
    assert refused is None
    scene = shapes.scene_from_caption(source)
    clauses = [as_world_words(c) for c in text.removeprefix(language.SCENE).split(arrange.CLAUSE)]
    if canonical.startswith("make the blue circle at the top blue"):  # it is blue already: the world says so
        with pytest.raises(language.WriterError) as error:
            referents.read_parts(scene, EDIT_JOINER.join(clauses), EDIT_JOINER)
        assert error.value.kind == "no_change"
        return
    got = referents.apply_edits(scene, referents.read_parts(scene, EDIT_JOINER.join(clauses), EDIT_JOINER))
    want = scene
    for part in canonical.split(" ; "):
        want = shapes.apply_edit(want, shapes.read_instruction(shapes.scene_from_caption(source), part))
    assert shapes.caption(got, "full") == shapes.caption(want, "full")


def as_world_words(clause: str) -> str:
    """The model reads a reshape as "make X a <shape>" and the background as "make background <colour>" (the first
    pass's words); the world reads "turn X into a <shape>", "make the background <colour>"."""
    head, _, last = clause.rpartition(" a ")
    if last in shapes.SHAPES and head.startswith("make "):
        return f"turn {head.removeprefix('make ')} into a {last}"
    return clause.replace("make background ", "make the background ")


def test_clauses_are_written_in_the_words_the_model_was_trained_on():
    assert arrange.in_model_words("turn the red thing into a square") == "make the red thing a square"
    assert arrange.in_model_words("make the background grey") == "make background grey"
    assert arrange.in_model_words("remove it") == "remove it"
    first = language.read("turn the ball into a box", instruction=True, second_pass=False).model_text
    assert language.read("turn the ball into a box", instruction=True).model_text == first == "make the circle a square"


def test_two_values_for_one_object_reach_the_world_as_a_contradiction():
    text, refused = language.model_input(language.edit_prompt(SCENE_3, "make the circle blue and red"))
    with pytest.raises(language.WriterError) as error:
        referents.read_parts(shapes.scene_from_caption(SCENE_3), text.removeprefix(language.SCENE).replace(
            arrange.CLAUSE, EDIT_JOINER), EDIT_JOINER)
    assert error.value.kind == "contradiction"


@pytest.mark.parametrize("source,instruction,read,target", [
    (SCENE_2, "delete the blue one, then put a yellow triangle in the top right",
     ["remove the blue thing", "add a yellow triangle in the top right"],
     "a yellow triangle in the top right and a red circle at the bottom, on a white background"),
    (SCENE_4, "make both triangles blue", ["make the triangle blue"],  # a plural: the model reads one, the world all
     "a blue triangle in the top left and a blue triangle in the top right, on a white background"),
])
def test_the_model_answers_each_edit_alone_and_the_answers_are_joined(monkeypatch, source, instruction, read, target):
    writer = language.load_writer()
    seen = []
    real = writer.generate

    def spy(prompts, **kw):
        seen.extend(prompts)
        return real(prompts, **kw)

    monkeypatch.setattr(writer, "generate", spy)
    assert writer.target_caption(source, instruction) == target
    assert seen == [language.SCENE + text for text in read]


def test_line_tokens_never_reach_the_model():
    for text in ("a red circle in the top row", "a blue square down the left column", "a ball on the diagonal"):
        assert not any(w.startswith(arrange.ROW_COL) for w in language.read(text).model_text.split())
    assert arrange.lines_as_cells(["row:2", "col:0", "diag:1"]) == ["at the bottom", "on the left", "in the middle"]


def test_the_model_is_trained_on_the_first_pass_and_reads_the_second():
    text = "squares: blue top left, yellow bottom right"
    first = language.read(text, second_pass=False).model_text
    assert first == "square blue in the top left, yellow in the bottom right"  # the order as typed
    assert language.model_input(text, second_pass=False)[0] == first
    assert language.model_input(text)[0] == "a blue square in the top left and a yellow square in the bottom right"
    with pytest.raises(CourseInputError, match="second_pass must be True or False"):
        language.read(text, second_pass="no")


def test_generate_read_refuses_what_is_not_text():
    with pytest.raises(CourseInputError, match="prompts must be a string or a list of strings"):
        language.load_writer().generate_read([None])


# ---------------------------------------------------------------------------------- the third round
def test_a_plural_mark_never_reaches_the_model():
    for text, instruction in (("red circles in the top row", False), ("make the squares green", True),
                              ("two blue balls", False)):
        for second_pass in (True, False):
            assert arrange.PLURAL not in language.read(text, instruction=instruction, second_pass=second_pass).model_text


@pytest.mark.parametrize("text,meant", [
    ("on the right a blue ball, and to its left a red square", "a red square to the left of a blue circle"),
    ("top: a green box, below it: a yellow ball", "a green square above a yellow circle"),
])
def test_a_relation_to_it_beside_one_place_is_a_relation(text, meant):
    assert language.read(text).model_text == meant


@pytest.mark.parametrize("text", ["fill the whole canvas with blue squares", "a checkerboard of green and red squares",
                                  "cover the grid in yellow dots"])
def test_filling_the_picture_is_refused_as_a_count(text):
    assert language.read(text).refusal.kind == "count"


@pytest.mark.parametrize("text", ["Hi team, a blue circle in the top left please", "the red one, must be seen!",
                                  "scratch the triangle"])
def test_a_common_english_word_is_never_corrected_into_a_refusal(text):
    # "team" is one edit from "teal", "seen" from "seven", "scratch" two from "stretch": a person typed the word they meant
    assert lexicon.common_word("team") and lexicon.common_word("seen")
    assert language.read(text, instruction=text.startswith("scratch")).refusal is None


def test_a_typo_that_is_no_english_word_is_still_corrected_and_refused():
    assert not lexicon.common_word("teel") and not lexicon.common_word("purpel")
    assert language.read("a teel square").refusal.kind == "colour"
    assert language.read("a purpel ball").refusal.kind == "colour"
    with pytest.raises(CourseInputError, match="word must be a string"):
        lexicon.common_word(7)


def test_no_training_pair_teaches_a_refusal_of_a_word_the_model_cannot_see():
    pairs = language.training_pairs(language.examples(3000, 0, "train"))
    assert not any(answer.startswith("unsupported:") for _, answer in pairs)


def test_a_plural_no_object_fits_and_removing_every_object_are_refused():
    scene = shapes.scene_from_caption(SCENE_4)
    with pytest.raises(language.WriterError) as error:
        referents.read_parts(scene, "make every circle red", EDIT_JOINER)
    assert error.value.kind == "not_in_scene"
    with pytest.raises(language.WriterError) as error:
        referents.read_parts(scene, "remove every triangle", EDIT_JOINER)
    assert error.value.kind == "action"


def test_a_side_names_the_one_object_on_it_and_no_more():
    scene = shapes.scene_from_caption(SCENE_4)
    assert referents.find_referent(scene, "the triangle on the left") == 0
    with pytest.raises(language.WriterError) as error:  # both triangles are in the top row
        referents.find_referent(scene, "the triangle at the top")
    assert error.value.kind == "ambiguous"
    with pytest.raises(language.WriterError) as error:  # nothing in the bottom row
        referents.find_referent(scene, "the triangle at the bottom")
    assert error.value.kind == "not_in_scene"


@pytest.mark.parametrize("instruction", ["make the square white", "paint it grey", "the circle should be black"])
def test_a_black_white_or_grey_object_is_still_refused(instruction):
    assert language.read(instruction, instruction=True).refusal.kind == "colour"


# ------------------------------------------------------------------------------------ round 5 (after final5)
@pytest.mark.parametrize("text,meant", [
    ("Table 3: a red circle in the top left", "a red circle in the top left"),
    ("No. 2: a green triangle at the bottom", "a green triangle at the bottom"),
    ("Q2 - a yellow triangle at the top", "a yellow triangle at the top"),
    ("question two: one blue square in the middle", "a blue square in the middle"),
    ("For five points, draw a red square on the left.", "a red square on the left"),
    ("for the school fair, a blue circle in the middle", "a blue circle in the middle"),
    ("Top floor, far left: one green square.", "a green square in the top left"),
    ("a blue circle, in the lower half, in the middle", "a blue circle at the bottom"),
    ("a red circle at the top and a blue one on the right", "a red circle at the top and a blue circle on the right"),
    ("Up in the right corner, a blue circle", "a blue circle in the top right"),
    ("down in the left corner a red square", "a red square in the bottom left"),
    ("the tent is a blue triangle at the top and the disco ball is a yellow circle in the top right",
     "a blue triangle at the top and a yellow circle in the top right"),
    ("On the right hand side of the road, a big green square", "a green square on the right"),
    ("GREEN SQUARE MIDDLE STOP RED CIRCLE TOP LEFT STOP", "a red circle in the top left and a green square in the middle"),
    ("Pray, a red circle in the top left", "a red circle in the top left"),
    ("the walls are black and there is a red circle in the middle", "a red circle in the middle, on a black background"),
])
def test_labels_purposes_names_and_a_row_with_a_column_are_read(text, meant):
    reading = language.read(text)
    assert reading.refusal is None
    assert sorted_caption(reading.model_text) == meant


@pytest.mark.parametrize("text", ["Table 3: four red circles", "for the party, five red circles in a row",
                                  "draw for me six blue squares"])
def test_a_label_or_a_purpose_does_not_hide_a_count(text):
    assert language.read(text).refusal.kind == "count"


@pytest.mark.parametrize("source,instruction,canonical", [
    (SCENE_3, "the one on the right, cobalt", "make the yellow circle on the right blue"),
    (SCENE_3, "the thing at the bottom - cobalt", "make the green square at the bottom blue"),
    (SCENE_2, "for the evening shift, make the background black", "make the background black"),
    (SCENE_2, "remove the blue circle, it is cluttering the slide", "remove the blue circle at the top"),
    (SCENE_3, "white walls please", "make the background white"),
    (SCENE_1, "make it red and put it on a white background",
     "make the green triangle in the top left red ; make the background white"),
    (SCENE_3, "the square comes off", "remove the green square at the bottom"),
    (SCENE_3, "we can do without the yellow circle", "remove the yellow circle on the right"),
    (SCENE_3, "take the square off, please", "remove the green square at the bottom"),
    (SCENE_3, "attention all units, the square is to be removed", "remove the green square at the bottom"),
    (SCENE_2, "I changed my mind, the background should be grey", "make the background grey"),
    (SCENE_1, "MAKE TRIANGLE BLUE STOP", "make the green triangle in the top left blue"),
    (SCENE_2, "the lower one, the circle, should be yellow", "make the red circle at the bottom yellow"),
    (SCENE_2, "Q3: add a green square in the top left", "add a green square in the top left"),
    (SCENE_3, "make the circle on the right a darker blue", "make the yellow circle on the right blue"),
])
def test_phrasal_verbs_appositions_and_purposes_in_instructions(source, instruction, canonical):
    test_instructions_are_split_into_edits_the_world_reads(source, instruction, canonical)


@pytest.mark.parametrize("instruction", ["slide the square to the left", "give it a spin", "shift the circle up",
                                         "make the circle lighter", "a darker background please"])
def test_a_move_is_still_refused_where_it_is_a_verb(instruction):
    assert language.read(instruction, instruction=True).refusal.kind == "action"


def test_a_common_word_is_meant_as_typed_unless_its_correction_is_far_commoner():
    # noisy channel: "comes" (370 times as common as "cones"), "tower" and "bell" (3 and 2 times rarer than "lower"
    # and "ball") were typed on purpose; "wed" (47 times rarer than "red") and "lest" (200 times) are slips;
    # a word that is no English word is always corrected
    assert lexicon.meant_as_typed("comes", "cones") and lexicon.meant_as_typed("tower", "lower")
    assert lexicon.meant_as_typed("bell", "ball") and lexicon.meant_as_typed("lift", "left")
    assert not lexicon.meant_as_typed("wed", "red") and not lexicon.meant_as_typed("lest", "left")
    assert not lexicon.meant_as_typed("lfet", "left") and not lexicon.meant_as_typed("bleu", "blue")
    assert "cone" not in language.read("the circle comes off", instruction=True).model_text
    assert language.read("a blue circle on the lfet side").model_text == "a blue circle on the left"
    assert "lower" not in language.read("Tower to traffic: a yellow triangle, bottom right").model_text
    with pytest.raises(CourseInputError, match="correction must be a string"):
        lexicon.meant_as_typed("bell", 3)
    assert lexicon.word_rate("xqzv") == 0 and 0 < lexicon.word_rate("circle") < 1e-3
    with pytest.raises(CourseInputError, match="word must be a string"):
        lexicon.word_rate(None)


# Issue 25, sixth round: what final6's lines taught, tested on phrasings of our own.
@pytest.mark.parametrize("text,meant", [
    ("Assignment 7, part c: a blue circle in the top left", "a blue circle in the top left"),
    ("Score 9/10 - a green square, lower right", "a green square in the bottom right"),
    ("Room 101. A red triangle dead centre.", "a red triangle in the middle"),
    ("Case #42: a yellow circle on the right", "a yellow circle on the right"),
    ("Control tower here: a blue square in the top right", "a blue square in the top right"),
    ("two guests, a red circle on the left and a blue square on the right",
     "a red circle on the left and a blue square on the right"),
    ("Report: three sightings. Blue circle, top left. Red square, middle. Green triangle, bottom right.",
     "a blue circle in the top left, a red square in the middle and a green triangle in the bottom right"),
    ("Colour: Blue / Shape: Circle / Position: Top Left / Background: none", "a blue circle in the top left"),
    ("whip me up a green circle in the top left, would you", "a green circle in the top left"),
    ("a red triangle on the left, not a circle", "a red triangle on the left"),
    ("Red and Green: a red square on the left, a green square on the right",
     "a red square on the left and a green square on the right"),
    ("three circles along the middle row: yellow, blue, red",
     "a yellow circle on the left, a blue circle in the middle and a red circle on the right"),
    ("the right column, top to bottom, holds a red square, a green square and a blue square",
     "a red square in the top right, a green square on the right and a blue square in the bottom right"),
    ("Three squares, all red, along the top row", "a red square in the top left, a red square at the top and a red square "
                                                   "in the top right"),
    ("top row: a red circle on the right. bottom row: a blue square on the left.",
     "a red circle in the top right and a blue square in the bottom left"),
    ("a blue triangle in the middle and everything grey behind it", "a blue triangle in the middle, on a grey background"),
])
def test_sixth_round_requests_are_read(text, meant):
    reading = language.read(text)
    assert reading.refusal is None, reading.refusal
    assert sorted_caption(reading.model_text) == meant


@pytest.mark.parametrize("text,kind", [
    ("a crimson squiggle along the bottom", "shape"), ("a yellow cloud shape in the middle", "shape"),
    ("a navy swirl, top right", "shape"), ("Report 5: six green squares", "count"), ("I want 10 circles", "count"),
])
def test_an_unknown_noun_after_a_colour_name_and_a_count_are_still_refused(text, kind):
    assert language.read(text).refusal.kind == kind


@pytest.mark.parametrize("text,meant", [
    ("a red doodad in the top left", "a red thing in the top left"),
    ("Imagine a green circle. Then a red square beneath.", "a green circle above a red square"),
])
def test_a_made_up_noun_is_a_thing_and_a_relation_at_the_end_looks_back(text, meant):
    assert language.read(text).model_text == meant


@pytest.mark.parametrize("source,instruction,canonical", [
    (SCENE_2, "the red one goes yellow", "make the red circle at the bottom yellow"),
    (SCENE_2, "the blue circle should go green by tonight", "make the blue circle at the top green"),
    (SCENE_3, "the square wants to be blue today", "make the green square at the bottom blue"),
    (SCENE_3, "give the square a coat of cobalt paint", "make the green square at the bottom blue"),
    (SCENE_3, "give the square a lemon yellow finish", "make the green square at the bottom yellow"),
    (SCENE_2, "Ticket #7: red circle -> green", "make the red circle at the bottom green"),
    (SCENE_2, "Background: black (was white)", "make the background black"),
    (SCENE_3, "the yellow circle is sent packing off", "remove the yellow circle on the right"),
    (SCENE_3, "the green square has left the room", "remove the green square at the bottom"),
    (SCENE_3, "evict the yellow triangle", "remove the yellow triangle on the left"),
    (SCENE_3, "green square, you may leave", "remove the green square at the bottom"),
    (SCENE_2, "red circle, change your colour to yellow", "make the red circle at the bottom yellow"),
    (SCENE_1, "look what popped up in the bottom right: a red circle",
     "add a red circle in the bottom right"),
    (SCENE_2, "add a green square in the middle and tell no one", "add a green square in the middle"),
    (SCENE_2, "Emerald green for the blue circle, please", "make the blue circle at the top green"),
    (SCENE_2, "remove the red circle, the time is up", "remove the red circle at the bottom"),
])
def test_sixth_round_instructions_are_read(source, instruction, canonical):
    test_instructions_are_split_into_edits_the_world_reads(source, instruction, canonical)


def test_a_colour_name_before_for_or_a_time_is_still_its_colour():
    assert language.read("paint it mauve for me", instruction=True).refusal.kind == "colour"
    assert language.read("make it tangerine by noon", instruction=True).refusal.kind == "colour"


def test_adding_more_objects_than_the_scene_can_hold_is_refused_before_the_model():
    for scene, instruction in ((SCENE_2, "add two more squares"), (SCENE_1, "add three more red circles")):
        text, refused = language.model_input(f"{scene}<|scene|>{instruction}")
        assert refused is not None and refused.kind == "count", text
        assert "at most 3 objects" in str(refused)
    assert language.model_input(f"{SCENE_1}<|scene|>add two more squares")[1] is None  # 1 + 2 fit


def test_an_inflection_is_read_as_its_stem_and_a_slip_into_a_word_is_left_out_of_training():
    assert lexicon.inflection_of("removed", "remove") and lexicon.inflection_of("wants", "want")
    assert lexicon.inflection_of("drew", "draw") and not lexicon.inflection_of("tower", "lower")
    assert "remove" in language.read("the circle should be removed", instruction=True).model_text
    from course_lib.language.reader import slip_kept
    assert slip_kept("a red bell in the top left") and not slip_kept("a red ball in the top left")
    with pytest.raises(CourseInputError, match="two strings"):
        lexicon.inflection_of("removed", None)
    with pytest.raises(CourseInputError, match="text must be a string"):
        slip_kept(3)


def test_a_reading_that_names_no_object_is_refused_not_guessed():
    writer = language.load_writer()
    with pytest.raises(language.WriterError) as error:
        writer.caption("just the top left corner please")
    assert "names no object" in str(error.value)


@pytest.mark.parametrize("text,meant", [
    ("a blew square in the top right", "a blue square in the top right"),
    ("a read circle at the top", "a red circle at the top"),
    ("a green circle in the top write corner", "a green circle in the top right"),
    ("a G-R-E-E-N circle on the left", "a green circle on the left"),
    ("HEY, LISTEN UP: A RED SQUARE, TOP RIGHT", "a red square in the top right"),
    ("Heads down! a yellow circle on the left", "a yellow circle on the left"),
    ("tonight's warm-up act: a blue circle in the middle", "a blue circle in the middle"),
    ("a yellow circle at the top of a grey sky", "a yellow circle at the top, on a grey background"),
    ("a red square and a blue circle, the square on the left and the circle on the right",
     "a red square on the left and a blue circle on the right"),
    ("A red circle? Yes, a red circle. A red circle at the bottom.", "a red circle at the bottom"),
    ("both bottom corners get a yellow triangle",
     "a yellow triangle in the bottom left and a yellow triangle in the bottom right"),
    ("Lucky seven, and a green square in the middle", "a green square in the middle"),
    ("two guests on stage: a red circle on the left and a blue square on the right",
     "a red circle on the left and a blue square on the right"),
    ("three objects: a red circle at the top, a blue square in the middle and a green triangle at the bottom",
     "a red circle at the top, a blue square in the middle and a green triangle at the bottom"),
    ("<picture bg='grey'><square colour='red' at='top'/></picture>", "a red square at the top, on a grey background"),
    ("a yellow square in the lowermost left corner", "a yellow square in the bottom left"),
    ("picture a blue triangle in the bottom right, something calm", "a blue triangle in the bottom right"),
])
def test_seventh_round_requests_are_read(text, meant):
    test_sixth_round_requests_are_read(text, meant)


@pytest.mark.parametrize("text,meant", [
    ("a green triangle sitting on a red square", "a green triangle above a red square"),
    ("a blue square, then a red one to its left", "a red square to the left of a blue square"),
    ("green ball. red box under ball.", "a green circle above a red square"),
    ("a pair of circles, the blue one above the red one", "a blue circle above a red circle"),
])
def test_a_resting_place_a_colour_with_the_shape_named_before_and_a_bare_noun_after_a_relation(text, meant):
    assert language.read(text).model_text == meant


@pytest.mark.parametrize("text,kind", [
    ("green squares in all 4 corners", "count"), ("red circles in all four corners", "count"),
    ("a blue star in the middle", "shape"), ("a red satr in the middle", "shape"),
])
def test_a_number_of_corners_counts_and_a_shape_slot_still_refuses(text, kind):
    assert language.read(text).refusal.kind == kind


def test_a_typo_as_near_an_everyday_word_as_a_refused_one_is_not_refused():
    assert language.read("coud you make it red", instruction=True).refusal is None  # could, not cloud
    assert language.read("clour the square blue", instruction=True).refusal is None  # colour, not cloud
    assert language.read("a green clod in the middle").refusal.kind == "shape"  # a shape slot: cloud


@pytest.mark.parametrize("source,instruction,canonical", [
    (SCENE_4, "make both green", "make the yellow triangle in the top left green ; "
                                 "make the yellow triangle in the top right green"),
    (SCENE_2, "make them all yellow", "make the blue circle at the top yellow ; make the red circle at the bottom yellow"),
    (SCENE_2, "Base to unit: the red circle is now green, copy?", "make the red circle at the bottom green"),
    (SCENE_1, "tattoo touch-up: go over it in cobalt", "make the green triangle in the top left blue"),
    (SCENE_1, "fill the triangle in with scarlet", "make the green triangle in the top left red"),
    (SCENE_2, "Stage addition: yellow square in the top left", "add a yellow square in the top left"),
    (SCENE_3, "he pots the yellow circle", "remove the yellow circle on the right"),
    (SCENE_3, "the square is out. off it goes", "remove the green square at the bottom"),
    (SCENE_3, "the circle - remove, remove, remove", "remove the yellow circle on the right"),
    (SCENE_2, "swap the backdrop over to black", "make the background black"),
    (SCENE_3, "uproot the green square", "remove the green square at the bottom"),
    (SCENE_2, "and just like that the blue circle is gone", "remove the blue circle at the top"),
])
def test_seventh_round_instructions_are_read(source, instruction, canonical):
    test_instructions_are_split_into_edits_the_world_reads(source, instruction, canonical)


def test_a_telegram_stop_ends_a_sentence_after_the_writer_lowers_its_case():
    for text in ("make square blue stop", "red circle top left stop blue square bottom right stop"):
        reading = language.read(text, instruction=text.startswith("make"))
        assert reading.refusal is None and "stop" not in reading.model_text
    assert language.read("a red circle at the bus stop").refusal is None
