"""Requests -> captions: free requests for a scene, with the caption the writer must answer.   [nb 09]"""

from __future__ import annotations

import random
import re

from course_lib import shapes
from course_lib.language import lexicon
from course_lib.language.words import ALONE_FRAMES, BACKGROUND_FRAMES, BACKGROUND_WORDS, COLOUR_WORDS, COUNT_FRAMES, \
    COUNT_WORDS, DEFAULT_CELL, DEFAULT_SHAPE, DETERMINERS, JOINERS, OBJECT_FRAMES, POSITION_WORDS, PREFIXES, \
    RELATION_FRAMES, SHAPE_WORDS, UNSUPPORTED, VAGUE_OBJECT_FRAMES, as_rng, check_split, entries
from course_lib.validation import CourseInputError


def object_words(o: shapes.ShapeObject, rng: random.Random | int, *, plural: bool = False,
                 split: str = "train") -> tuple[str, str]:
    """Return (colour word, shape word) for an object: COLOUR_WORDS or a lexicon name of `split`, and SHAPE_WORDS.

    Half the colour words come from COLOUR_WORDS, half from the colour lexicon's names of the world
    colour that `split` may use ("train": lexicon split "train", "test": "heldout"); plural nouns
    with plural=True.
    """
    if not isinstance(o, shapes.ShapeObject):
        raise CourseInputError(f"o must be a shapes.ShapeObject, got {type(o).__name__}.")
    check_split(split)
    rng = as_rng(rng)
    c = rng.choice(COLOUR_WORDS[o.colour])
    if rng.random() < 0.5:
        c = rng.choice(lexicon.colour_names(o.colour, "train" if split == "train" else "heldout"))
    s = rng.choice(SHAPE_WORDS[o.shape])[1 if plural else 0]
    return c, s


def _phrase_object(o, rng, split, *, vague=False, position=True):
    c, s = object_words(o, rng, split=split)
    d = rng.choice(entries(DETERMINERS, split))
    p = rng.choice(POSITION_WORDS[o.cell])
    if not position:
        return rng.choice(entries(ALONE_FRAMES, split)).format(d=d, c=c, s=s)
    frames = VAGUE_OBJECT_FRAMES if vague else OBJECT_FRAMES
    return rng.choice(entries(frames, split)).format(d=d, c=c, s=s, p=p)


def _join(parts, rng, split):
    joiners = entries(JOINERS, split)
    out = parts[0]
    for part in parts[1:]:
        out += rng.choice(joiners) + part
    return out


def _with_defaults(scene: shapes.Scene, vague: set[int]) -> shapes.Scene:
    objects = [o if k not in vague else shapes.ShapeObject(DEFAULT_SHAPE, o.colour, o.row, o.col, o.half_size, o.dx, o.dy)
               for k, o in enumerate(scene.objects)]
    return shapes.Scene(tuple(objects), scene.background)


def _objects_caption(objects, background: str | None) -> str:
    # a caption with the objects in the given order (shapes.caption sorts them; parse_caption reads either)
    body = shapes.objects_phrase(objects)
    return body if background is None else f"{body}, on a {background} background"


def _check_request_scene(scene) -> shapes.Scene:
    shapes.check_scene(scene)
    if not scene.objects:
        raise CourseInputError("a request needs a scene with at least one object.")
    return scene


def request_example(scene: shapes.Scene, rng: random.Random | int,
                    split: str = "train") -> tuple[str, str, shapes.Scene | None]:
    """Return (free request, canonical answer, the scene the answer describes) for a scene.   [nb 09]

    The request names every object (synonyms, frames, counts for repeated objects, a relation for
    some two-object scenes, a vague "something red" now and then) and sometimes the background;
    the answer is a caption of the scene with the objects in the request's order, in the "objects"
    phrasing (or with the background when the request names it; "relation" for a relation request);
    resolve_request puts them in reading order. split "train" draws training
    entries only, "test" held-out entries only. rng: a random.Random or an int seed.
    """
    check_split(split)
    return _request_example(_check_request_scene(scene), as_rng(rng), split)


def _request_example(scene: shapes.Scene, rng: random.Random, split: str) -> tuple[str, str, shapes.Scene]:
    objects = list(scene.objects)
    vague: set[int] = set()
    # a relation between two objects: its own phrasing, no cells, no background
    if len(objects) == 2 and rng.random() < 0.25:
        rel = "left" if objects[0].col != objects[1].col else "above"
        a, b = objects if rel == "above" or objects[0].col < objects[1].col else objects[::-1]
        x, y = (f"a {' '.join(object_words(o, rng, split=split))}" for o in (a, b))
        body = rng.choice(entries(RELATION_FRAMES[rel], split)).format(x=x, y=y)
        answer = shapes.caption(scene, "relation")
        return rng.choice(entries(PREFIXES, split)) + body, answer, scene
    # the objects: repeated (colour, shape) pairs as counts, the others one by one, in a random order
    groups: dict[tuple[str, str], list[shapes.ShapeObject]] = {}
    for o in objects:
        groups.setdefault((o.colour, o.shape), []).append(o)
    parts = []  # (text, the objects it names, in its order)
    for (colour, shape), members in groups.items():
        if len(members) > 1 and rng.random() < 0.7:
            positions = [rng.choice(POSITION_WORDS[o.cell]) for o in members]
            c, s = object_words(members[0], rng, plural=True, split=split)
            p = ", ".join(positions[:-1]) + " and " + positions[-1]
            parts.append((rng.choice(entries(COUNT_FRAMES, split)).format(n=COUNT_WORDS[len(members)], c=c, s=s, p=p),
                          [objects.index(o) for o in members]))
        else:
            for o in members:
                k = objects.index(o)
                if rng.random() < 0.1:
                    vague.add(k)
                parts.append((_phrase_object(o, rng, split, vague=k in vague), [k]))
    alone = len(objects) == 1 and objects[0].cell == DEFAULT_CELL and not vague and rng.random() < 0.3
    if alone:
        parts = [(_phrase_object(objects[0], rng, split, position=False), [0])]
    rng.shuffle(parts)
    body = _join([t for t, _ in parts], rng, split)
    named_background = rng.random() < 0.4
    if named_background:
        body += rng.choice(entries(BACKGROUND_FRAMES, split)).format(b=rng.choice(BACKGROUND_WORDS[scene.background]))
    target = _with_defaults(scene, vague)
    order = [target.objects[k] for _, ks in parts for k in ks]  # the writer names them as the request does
    answer = _objects_caption(order, target.background if named_background else None)
    return rng.choice(entries(PREFIXES, split)) + body, answer, target


def refusal_request(scene: shapes.Scene, rng: random.Random | int, split: str = "train") -> tuple[str, str]:
    """Return (request the world cannot satisfy, refusal): an unsupported colour or shape word, or too many objects."""
    check_split(split)
    return _refusal_request(_check_request_scene(scene), as_rng(rng), split)


def _refusal_request(scene: shapes.Scene, rng: random.Random, split: str) -> tuple[str, str]:
    request, _, _ = _request_example(scene, rng, split)
    if rng.random() < 0.2:
        n = rng.choice([4, 5])
        c, s = object_words(scene.objects[0], rng, plural=True, split=split)
        return rng.choice(entries(PREFIXES, split)) + f"{COUNT_WORDS[n]} {c} {s}", "too many objects"
    if rng.random() < 0.15:  # more than MAX_OBJECTS objects in all, no count above it
        o = scene.objects[0]
        (c1, s1), (c2, s2) = object_words(o, rng, plural=True, split=split), object_words(o, rng, plural=True, split=split)
        counts = rng.choice([(2, 2), (3, 1), (2, 3), (3, 3)])
        parts = [f"{COUNT_WORDS[counts[0]]} {c1} {s1}",
                 f"{COUNT_WORDS[counts[1]]} {c2} {s2}" if counts[1] > 1 else f"a {c2} {SHAPE_WORDS[o.shape][0][0]}"]
        return rng.choice(entries(PREFIXES, split)) + rng.choice(entries(JOINERS, split)).join(parts), "too many objects"
    kind = rng.choice(["colour", "shape"])
    words = sorted({w for ws in COLOUR_WORDS.values() for w in ws}) if kind == "colour" else \
        sorted({w for ws in SHAPE_WORDS.values() for pair in ws for w in pair})
    present = [w for w in words if re.search(rf"\b{w}\b", request)]
    if not present:
        return _refusal_request(scene, rng, split)
    word = rng.choice(entries(UNSUPPORTED[kind], split))
    request = re.sub(rf"\b{rng.choice(present)}\b", word, request, count=1)
    return request, f"unsupported: {word}"
