"""Referents: the writer's instruction answers name objects as the instruction did; the world finds them.   [nb 09]

The writer answers an instruction with the edit and the object in the words the instruction used,
put into the world's words ("make the circle yellow", "remove the thing in the top left", "turn it
into a triangle"), never with attributes the instruction did not give. The world then resolves the
referent against the scene, the way a program resolves a tool call's argument:

    the [colour] [shape | thing] [position phrase]    every object with those attributes
    it                                                the scene's only object
    every [colour] shape [position phrase]            all of them, one edit each ("make the circles green")
    every thing                                       every object of the scene ("make both blue")

where a place on an edge ("on the left", "at the bottom") also names that side of the grid when no object
of the kind sits in its middle cell ("the triangle on the left" of two in the top row, "the lower
circle"); exactly one object -> the edit; none -> "not in the scene"; several -> "ambiguous"; an edit that
changes nothing, two edits of the same thing, or an object where the scene has no room are refused
too. So the model never has to copy an object's other attributes out of the source caption (what a
0.9 M-parameter model gets wrong), and an ambiguous "the triangle" can never silently pick one.
"""

from __future__ import annotations

import re

from course_lib import shapes
from course_lib.language.refusals import WriterError
from course_lib.validation import CourseInputError

_COLOURS = "|".join(shapes.COLOURS)
_SHAPES = "|".join(shapes.SHAPES)
_PLACES = "|".join(re.escape(p) for p in shapes.POSITION_PHRASES.values())
_CELL_OF = {p: cell for cell, p in shapes.POSITION_PHRASES.items()}
# An edge's middle cell also names its side when no object of the kind sits in that cell: "the triangle on the left" of
# two triangles in the top row is the top-left one, "the lower circle" the one in the bottom row (axis 0: row, 1: column).
_SIDES = {shapes.POSITION_PHRASES[(0, 1)]: (0, 0), shapes.POSITION_PHRASES[(2, 1)]: (0, 2),
          shapes.POSITION_PHRASES[(1, 0)]: (1, 0), shapes.POSITION_PHRASES[(1, 2)]: (1, 2)}
REFERENT = re.compile(rf"^(?:(?P<it>it)|the(?: (?P<colour>{_COLOURS}))?(?: (?P<shape>{_SHAPES}|thing))?"
                      rf"(?: (?P<place>{_PLACES}))?)$")
PARTS = (
    ("background", re.compile(rf"^make the background (?P<value>{'|'.join(shapes.BACKGROUNDS)})$")),
    ("add", re.compile(rf"^add a (?P<colour>{_COLOURS}) (?P<shape>{_SHAPES}) (?P<place>{_PLACES})$")),
    ("colour", re.compile(rf"^make (?P<ref>.+) (?P<value>{_COLOURS})$")),
    ("shape", re.compile(rf"^turn (?P<ref>.+) into a (?P<value>{_SHAPES})$")),
    ("remove", re.compile(r"^remove (?P<ref>.+)$")),
)


def _refuse(kind: str, message: str) -> WriterError:
    error = WriterError(message)
    error.kind = kind
    return error


def referent_phrase(scene: shapes.Scene, index: int, named: tuple[str, ...]) -> str:
    """Return the referent of object `index` naming only the attributes in `named` ("colour", "shape", "position"; () -> "it")."""
    shapes.check_scene(scene)
    if not isinstance(index, int) or not 0 <= index < len(scene.objects):
        raise CourseInputError(f"index must be an object's index in the scene (0..{len(scene.objects) - 1}), got {index!r}.")
    if not set(named) <= {"colour", "shape", "position"}:
        raise CourseInputError(f"named must hold 'colour', 'shape' and/or 'position', got {named!r}.")
    if not named:
        return "it"
    o = scene.objects[index]
    words = ["the"] + ([o.colour] if "colour" in named else []) + [o.shape if "shape" in named else "thing"]
    if words[-1] == "thing" and "colour" in named and "position" not in named:
        words[-1] = "thing"
    return " ".join(words + ([shapes.POSITION_PHRASES[o.cell]] if "position" in named else []))


def find_referent(scene: shapes.Scene, phrase: str) -> int:
    """Return the index of the one object `phrase` names (REFERENT's grammar); raise WriterError if none or several do.   [nb 09]"""
    shapes.check_scene(scene)
    if not isinstance(phrase, str):
        raise CourseInputError(f"phrase must be a string, got {type(phrase).__name__}.")
    m = REFERENT.match(phrase)
    if m is None or phrase == "the":
        raise _refuse("invalid", f"{phrase!r} is not a referent the world reads (e.g. 'the red circle', 'it').")
    if m["it"]:
        if len(scene.objects) != 1:
            raise _refuse("ambiguous", f"'it' could be any of the {len(scene.objects)} objects; name one by colour, "
                                       f"shape or position.")
        return 0
    kind = [k for k, o in enumerate(scene.objects)
            if (m["colour"] is None or o.colour == m["colour"]) and (m["shape"] in (None, "thing") or o.shape == m["shape"])]
    found = [k for k in kind if m["place"] is None or scene.objects[k].cell == _CELL_OF[m["place"]]]
    if not found and m["place"] in _SIDES:  # "the left triangle", "the lower circle": the one on that side of the grid
        axis, value = _SIDES[m["place"]]
        found = [k for k in kind if (scene.objects[k].row, scene.objects[k].col)[axis] == value]
    thing = phrase.removeprefix("the ")
    if not found:
        raise _refuse("not_in_scene", f"there is no {thing} in the scene.")
    if len(found) > 1:
        raise _refuse("ambiguous", f"which {thing}? The scene holds {len(found)}; name one by colour or position.")
    return found[0]


def read_part(scene: shapes.Scene, part: str) -> shapes.Edit:
    """Return the Edit of one instruction answer ("make the circle yellow"), its referent found in the scene.   [nb 09]

    Raises WriterError with .kind: "invalid" (not the answer grammar), "not_in_scene", "ambiguous",
    "no_change" (the edit changes nothing), "count" or "occupied" (no room for an added object).
    """
    shapes.check_scene(scene)
    if not isinstance(part, str):
        raise CourseInputError(f"part must be a string, got {type(part).__name__}.")
    for kind, pattern in PARTS:
        m = pattern.match(part)
        if m is None:
            continue
        if kind == "background":
            if m["value"] == scene.background:
                raise _refuse("no_change", f"the background is already {scene.background}.")
            return shapes.Edit("background", value=m["value"])
        if kind == "add":
            cell = _CELL_OF[m["place"]]
            if len(scene.objects) >= shapes.MAX_OBJECTS:
                raise _refuse("count", f"the scene already holds {shapes.MAX_OBJECTS} objects, the most it can.")
            if cell not in scene.free_cells():
                raise _refuse("occupied", f"something is already {m['place']}; add it in an empty cell.")
            return shapes.Edit("add", obj=shapes.ShapeObject(m["shape"], m["colour"], *cell))
        index = find_referent(scene, m["ref"])
        o = scene.objects[index]
        if kind == "remove":
            if len(scene.objects) == 1:
                raise _refuse("action", "removing the only object would leave an empty scene, which the world does not draw.")
            return shapes.Edit("remove", index=index)
        if getattr(o, kind) == m["value"]:
            raise _refuse("no_change", f"the {o.noun} is already {'a ' if kind == 'shape' else ''}{m['value']}.")
        return shapes.Edit(kind, index=index, value=m["value"])
    raise _refuse("invalid", f"{part!r} is not an instruction answer the world reads.")


def _each(scene: shapes.Scene, part: str) -> list[str]:
    # "make every circle green" -> one part per circle, each named in full ("make the blue circle on the left green")
    m = re.match(rf"^(make|turn|remove) every (.+?)( (?:{_COLOURS})| into a (?:{_SHAPES}))?$", part)
    if m is None:
        return [part]
    ref = REFERENT.match("the " + m[2])
    if ref is None or ref["shape"] is None:
        raise _refuse("invalid", f"{part!r} is not an instruction answer the world reads.")
    found = [k for k, o in enumerate(scene.objects) if ref["shape"] in ("thing", o.shape) and (
        ref["colour"] is None or o.colour == ref["colour"]) and (ref["place"] is None or o.cell == _CELL_OF[ref["place"]])]
    if not found:
        raise _refuse("not_in_scene", f"there is no {m[2]} in the scene.")
    return [f"{m[1]} {referent_phrase(scene, k, ('colour', 'shape', 'position'))}{m[3] or ''}" for k in found]


def read_parts(scene: shapes.Scene, answer: str, joiner: str) -> list[shapes.Edit]:
    """Return the Edits of an answer's parts (split by joiner); two edits of the same thing are a contradiction."""
    edits = [read_part(scene, each) for part in answer.split(joiner) for each in _each(scene, part)]
    keys = [(e.kind,) if e.kind == "background" else (e.kind, e.index) for e in edits if e.kind != "add"]
    removed = {e.index for e in edits if e.kind == "remove"}
    added = [e.obj.cell for e in edits if e.kind == "add"]
    if len(keys) != len(set(keys)) or any(e.kind in ("colour", "shape") and e.index in removed for e in edits) \
            or len(added) != len(set(added)):
        raise _refuse("contradiction", "the instructions change the same thing twice; give one of them.")
    if removed and len(removed) == len(scene.objects) and not added:
        raise _refuse("action", "removing every object would leave an empty scene, which the world does not draw.")
    if len(scene.objects) - len(removed) + len(added) > shapes.MAX_OBJECTS:
        raise _refuse("count", f"a scene holds at most {shapes.MAX_OBJECTS} objects.")
    return edits


def apply_edits(scene: shapes.Scene, edits: list[shapes.Edit]) -> shapes.Scene:
    """Return the scene with the edits applied: recolours and reshapes, then removals (highest index first), then additions."""
    order = {"background": 0, "colour": 0, "shape": 0, "remove": 1, "add": 2}
    for edit in sorted(edits, key=lambda e: (order[e.kind], -(e.index or 0))):
        scene = shapes.apply_edit(scene, edit)
    return scene
