"""Captions: English captions of a scene in a few phrasings, and reading them back.   [nb 04-06]"""

from __future__ import annotations

import torch

from course_lib import noise
from course_lib.shapes.scene import Scene, ShapeObject, check_scene, check_scenes
from course_lib.shapes.world import BACKGROUNDS, COLOURS, PHRASINGS, POSITION_PHRASES, POSITIONS, SHAPES
from course_lib.validation import CourseInputError, check_choice


def join_phrases(parts: list[str]) -> str:
    """Join phrases as an English list: "a", "a and b", "a, b and c" ("" for none)."""
    if len(parts) <= 2:
        return " and ".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def objects_phrase(objects) -> str:
    """Name objects in the given order: "a red circle on the left and a blue square at the top" ("" for none)."""
    return join_phrases([f"a {o.noun} {POSITION_PHRASES[o.cell]}" for o in objects])


def _relation_phrase(scene: Scene) -> str:
    a, b = scene.objects  # reading order: a is above b, or left of b in the same row
    if a.col != b.col:
        left, right = (a, b) if a.col < b.col else (b, a)
        return f"a {left.noun} to the left of a {right.noun}"
    return f"a {a.noun} above a {b.noun}"


def caption(scene: Scene, phrasing: str = "full") -> str:
    """Return an English caption of the scene.   [nb 04-06]

    phrasing (PHRASINGS):
      "full"              "a red circle on the left and a blue square at the top, on a white background"
      "objects"           "a red circle on the left and a blue square at the top"
      "background_first"  "a white background with a red circle on the left and a blue square at the top"
      "relation"          "a red circle to the left of a blue square"   (two-object scenes only)
    Objects are named in reading order (by row, then column), so a colour, shape or background edit
    changes exactly one word of the "full" caption (prompt-to-prompt word swaps align).
    """
    check_scene(scene)
    check_choice(phrasing, PHRASINGS, "phrasing")
    return _caption(scene, phrasing)


def _caption(scene: Scene, phrasing: str) -> str:
    if not scene.objects:
        return f"an empty {scene.background} background"
    objects = objects_phrase(scene.objects)
    if phrasing == "full":
        return f"{objects}, on a {scene.background} background"
    if phrasing == "objects":
        return objects
    if phrasing == "background_first":
        return f"a {scene.background} background with {objects}"
    if len(scene.objects) != 2:
        raise CourseInputError(f"the 'relation' phrasing needs exactly two objects, this scene has {len(scene.objects)}; "
                               f"use shapes.captions(scene) for the phrasings that apply.")
    return _relation_phrase(scene)


def _phrasings_of(scene: Scene, phrasings) -> list[str]:
    return [p for p in phrasings if p != "relation" or len(scene.objects) == 2]


def captions(scene: Scene) -> dict[str, str]:
    """Return every phrasing that applies to the scene: {phrasing: caption}."""
    check_scene(scene)
    return {p: _caption(scene, p) for p in _phrasings_of(scene, PHRASINGS)}


def random_captions(scenes: list[Scene], generator: torch.Generator | int | None = None,
                    phrasings=PHRASINGS) -> list[str]:
    """Return one caption per scene, its phrasing drawn uniformly among `phrasings` that apply ("full" if none does)."""
    phrasings = (phrasings,) if isinstance(phrasings, str) else tuple(phrasings)
    if not phrasings:
        raise CourseInputError(f"phrasings must name at least one of {PHRASINGS}.")
    for p in phrasings:
        check_choice(p, PHRASINGS, "phrasing")
    scenes = check_scenes(scenes)
    u = torch.rand(len(scenes), generator=noise.as_generator(generator)).tolist()
    out = []
    for scene, ui in zip(scenes, u):
        names = _phrasings_of(scene, phrasings) or ["full"]
        out.append(_caption(scene, names[int(ui * len(names))]))
    return out


def vocabulary() -> list[str]:
    """Return every word the captions use (sorted; "," counts as a word), e.g. for a tokenizer's vocabulary.   [nb 05]"""
    words = {","} | set(COLOURS) | set(SHAPES) | set(BACKGROUNDS)
    words |= {w for phrase in POSITION_PHRASES.values() for w in phrase.split()}
    words |= set("a an empty background with on and to the left of above".split())
    return sorted(words)


def _parse_objects(text: str) -> list[tuple[str, str, int, int]]:
    phrase_to_cell = {v: k for k, v in POSITION_PHRASES.items()}
    found = []
    parts = text.replace(", ", " and ").split(" and ")
    for part in parts:
        words = part.strip().split(" ", 3)
        if len(words) != 4 or words[0] != "a" or words[3] not in phrase_to_cell:
            raise CourseInputError(f"cannot read {part!r} as 'a <colour> <shape> <position phrase>' (caption {text!r}).")
        check_choice(words[1], COLOURS, "colour")
        check_choice(words[2], SHAPES, "shape")
        found.append((words[1], words[2], *phrase_to_cell[words[3]]))
    return found


def parse_caption(text: str) -> dict:
    """Read a "full", "objects" or "background_first" caption back into its structure.   [nb 06]

    Returns {"background": name or None, "objects": [{"colour", "shape", "position", "row", "col"}]},
    the same keys as Scene.describe() (without sizes). Raises CourseInputError for other text.
    """
    if not isinstance(text, str):
        raise CourseInputError(f"parse_caption() takes a str, got {type(text).__name__}.")
    background, body = None, text.strip()
    if body.startswith("an empty ") and body.endswith(" background"):
        background = body[len("an empty "): -len(" background")]
        check_choice(background, BACKGROUNDS, "background")
        return {"background": background, "objects": []}
    if body.endswith(" background") and ", on a " in body:
        body, background = body[: -len(" background")].rsplit(", on a ", 1)
    elif body.startswith("a ") and " background with " in body:
        background, body = body[2:].split(" background with ", 1)
    if background is not None:
        check_choice(background, BACKGROUNDS, "background")
    objects = [{"colour": c, "shape": s, "position": POSITIONS[(r, k)], "row": r, "col": k}
               for c, s, r, k in _parse_objects(body)]
    return {"background": background, "objects": objects}


def caption_objects(text: str) -> list[ShapeObject]:
    """Return the objects a caption names, in the caption's order (default sizes, no offsets).   [nb 09]"""
    return [ShapeObject(o["shape"], o["colour"], o["row"], o["col"]) for o in parse_caption(text)["objects"]]
