"""describes: does a request ask for a caption's scene, in words the world has?   [nb 09]

An oracle for notebook 09's exercise C and the tests, written apart from the reader: it looks for
each object's words anywhere in the request (a colour name the lexicon maps to the object's colour,
a shape noun of it, the row and column words of its cell), so a refusal of a request that
describes its caption is a false refusal.
"""

from __future__ import annotations

import re

from course_lib import shapes
from course_lib.language.lexicon import BACKGROUND_TERMS, COUNT_TERMS, OTHER_CATEGORIES, POSITION_TERMS, SHAPE_NOUNS, \
    UNSUPPORTED_SHAPES, colour_of
from course_lib.language.words import DEFAULT_CELL, DEFAULT_SHAPE
from course_lib.validation import CourseInputError

_ROW_WORDS = {0: "top", 2: "bottom"}
_COL_WORDS = {0: "left", 2: "right"}


def _colours_named(words: list[str]) -> set[str]:
    named = set()
    for n in (1, 2, 3):
        for i in range(len(words) - n + 1):
            entry = colour_of(" ".join(words[i:i + n]))
            if entry is not None and entry.world is not None:
                named.add(entry.world)
    return named


def describes(request: str, caption: str) -> str:
    """Return "" if `request` asks for the scene of `caption` in words the world has, else what it lacks or asks beyond it.   [nb 09]

    The request must name each object's colour (a colour name the lexicon maps to it), its shape (a
    noun of lexicon.SHAPE_NOUNS; an object of DEFAULT_SHAPE may stay vague) and its cell (the row
    and column words of lexicon.POSITION_TERMS; a lone object in DEFAULT_CELL may leave it out),
    and the background where the caption names one; it must hold no colour category the world
    lacks (lexicon.OTHER_CATEGORIES), no shape of lexicon.UNSUPPORTED_SHAPES and no count above
    shapes.MAX_OBJECTS. caption: a caption the world draws (shapes.parse_caption raises otherwise).
    """
    if not isinstance(request, str) or not isinstance(caption, str):
        raise CourseInputError("describes(request, caption) takes two strings.")
    scene = shapes.parse_caption(caption)
    words = re.findall(r"[a-z]+|\d+", request.lower())
    present = set(words)
    lacking = [w for w in words if w in OTHER_CATEGORIES and w not in ("grey", "gray", "black", "white")
               or w in UNSUPPORTED_SHAPES or w.rstrip("s") in UNSUPPORTED_SHAPES]
    if lacking:
        return f"it asks for {lacking[0]!r}, which the shapes world does not have"
    too_many = [w for w in words if COUNT_TERMS.get(w, 0) > shapes.MAX_OBJECTS and w not in ("many", "lots")]
    if too_many:
        return f"it asks for {too_many[0]} objects; a scene holds at most {shapes.MAX_OBJECTS}"
    colours = _colours_named(words)
    rows = {POSITION_TERMS[w] for w in words if w in POSITION_TERMS}
    objects = scene["objects"]
    for o in objects:
        name = f"the {o['colour']} {o['shape']}"
        if o["colour"] not in colours:
            return f"it never names the colour of {name} ({o['colour']})"
        if o["shape"] != DEFAULT_SHAPE and not present & set(SHAPE_NOUNS[o["shape"]]):
            return f"it never names the shape of {name} ({o['shape']})"
        cell = (o["row"], o["col"])
        if len(objects) == 1 and cell == DEFAULT_CELL:
            continue
        needed = {_ROW_WORDS.get(cell[0]), _COL_WORDS.get(cell[1])} - {None} or {"middle"}
        if cell[0] == 1 and cell[1] == 1:
            needed = {"middle"}
        if not needed <= rows:
            return f"it never says where {name} is ({shapes.POSITION_PHRASES[cell]})"
    background = scene["background"]
    if background is not None:
        named = {w for w in words if w in (background, "gray" if background == "grey" else background)}
        named |= {w for w in words if BACKGROUND_TERMS.get(w) == background}
        if not named:
            return f"it never names the {background} background"
    return ""
