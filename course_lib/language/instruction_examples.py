"""Instructions -> target captions: free instructions about a scene, with the canonical answer.   [nb 09]

The answer is the edit in the world's canonical instruction language (shapes.instruction; two
edits joined by EDIT_JOINER), which resolve_edit turns into the target caption, or a refusal.
"""

from __future__ import annotations

import random

import torch

from course_lib import noise, shapes
from course_lib.language.referents import referent_phrase
from course_lib.language.request_examples import object_words
from course_lib.language.words import BACKGROUND_WORDS, COLOUR_WORDS, DETERMINERS, EDIT_JOINER, INSTRUCTION_FRAMES, \
    INSTRUCTION_JOINERS, INSTRUCTION_PREFIXES, POSITION_WORDS, REFERENT_FRAMES, SCENE, SHAPE_WORDS, UNSUPPORTED, \
    as_rng, check_split, check_text, entries
from course_lib.validation import CourseInputError


_NAMED = {"the {s}": ("shape",), "the {c} {s}": ("colour", "shape"), "the {c} one": ("colour",),
          "the {s} {p}": ("shape", "position"), "the {c} {s} {p}": ("colour", "shape", "position"),
          "the thing {p}": ("position",)}  # what each of REFERENT_FRAMES names


def _referents(scene: shapes.Scene, k: int) -> list[str]:
    o = scene.objects[k]
    same_shape = sum(x.shape == o.shape for x in scene.objects)
    same_pair = sum((x.colour, x.shape) == (o.colour, o.shape) for x in scene.objects)
    same_colour = sum(x.colour == o.colour for x in scene.objects)
    ok = [same_shape == 1, same_pair == 1, same_colour == 1, True, True, True]
    return [f for f, good in zip(REFERENT_FRAMES, ok) if good]


def _referent(scene, k, rng, split="train") -> tuple[str, str]:
    # (the referent as the instruction says it, the answer's referent: the same attributes in the world's words)
    o = scene.objects[k]
    if len(scene.objects) == 1 and rng.random() < 0.3:
        return "it", "it"
    frame = rng.choice(_referents(scene, k))
    c, s = object_words(o, rng, split=split)
    return frame.format(c=c, s=s, p=rng.choice(POSITION_WORDS[o.cell])), referent_phrase(scene, k, _NAMED[frame])


def phrase_edit(scene: shapes.Scene, edit: shapes.Edit, rng: random.Random | int, split: str = "train") -> str:
    """Return a free instruction for one edit of the scene (an unambiguous referent, a frame of `split`).   [nb 09]

    The edit must apply to the scene (shapes.apply_edit's checks). rng: a random.Random or an int seed.
    """
    check_split(split)
    if not isinstance(edit, shapes.Edit):
        raise CourseInputError(f"edit must be a shapes.Edit, got {type(edit).__name__}.")
    shapes.apply_edit(scene, edit)
    return _phrase_edit(scene, edit, as_rng(rng), split)


def _phrase_edit(scene: shapes.Scene, edit: shapes.Edit, rng: random.Random, split: str) -> str:
    return _phrase_and_answer(scene, edit, rng, split)[0]


def _phrase_and_answer(scene: shapes.Scene, edit: shapes.Edit, rng: random.Random, split: str) -> tuple[str, str]:
    # (a free instruction for the edit, the writer's answer: the edit with the object named as the instruction names it)
    frame = rng.choice(entries(INSTRUCTION_FRAMES[edit.kind], split))
    if edit.kind == "background":
        return frame.format(b=rng.choice(BACKGROUND_WORDS[edit.value])), shapes.instruction(scene, edit)
    if edit.kind == "add":
        o = edit.obj
        c, s = object_words(o, rng, split=split)
        text = frame.format(o=f"{rng.choice(entries(DETERMINERS, split))} {c} {s} {rng.choice(POSITION_WORDS[o.cell])}")
        return text, shapes.instruction(scene, edit)
    r, ref = _referent(scene, edit.index, rng, split)
    if edit.kind == "colour":
        return frame.format(r=r, c=rng.choice(COLOUR_WORDS[edit.value])), f"make {ref} {edit.value}"
    if edit.kind == "shape":
        return frame.format(r=r, s=rng.choice(SHAPE_WORDS[edit.value])[0]), f"turn {ref} into a {edit.value}"
    return frame.format(r=r), f"remove {ref}"


def edit_prompt(source_caption: str, instruction: str) -> str:
    """Return the writer's input for an edit: '<source caption><|scene|><instruction>'."""
    check_text(source_caption, "source_caption"), check_text(instruction, "instruction")
    if SCENE in source_caption or SCENE in instruction:
        raise CourseInputError(f"source_caption and instruction must not contain the separator {SCENE!r}.")
    return f"{source_caption}{SCENE}{instruction}"


def _two_edits(scene, g, rng):
    # two edits on different things (a compatible pair) or on the same thing (a contradiction)
    kinds = [k for k in ("colour", "shape", "background") if k in shapes.possible_edit_kinds(scene)]
    first = shapes.random_edit(scene, g, kinds)
    if rng.random() < 0.5:  # contradiction: the same target, another value (or removed and recoloured)
        if first.kind == "background":
            other = [b for b in shapes.BACKGROUNDS if b not in (first.value, scene.background)]
            return first, shapes.Edit("background", value=rng.choice(other)), True
        if first.kind == "colour":
            o = scene.objects[first.index]
            other = [c for c in shapes.COLOURS if c not in (first.value, o.colour)]
            second = shapes.Edit("colour", index=first.index, value=rng.choice(other))
        else:
            o = scene.objects[first.index]
            other = [s for s in shapes.SHAPES if s not in (first.value, o.shape)]
            second = shapes.Edit("shape", index=first.index, value=rng.choice(other))
        if len(scene.objects) >= 2 and rng.random() < 0.3:
            second = shapes.Edit("remove", index=first.index)
        return first, second, True
    rest = [k for k in kinds if k != first.kind] or kinds
    for _ in range(20):
        second = shapes.random_edit(scene, g, rest)
        same_object = second.kind != "background" and first.kind != "background" and second.index == first.index
        if not same_object and not (first.kind == second.kind == "background"):
            return first, second, False
    return first, None, False


def instruction_example(scene: shapes.Scene, g: torch.Generator | int, rng: random.Random | int,
                        split: str = "train") -> tuple[str, str]:
    """Return (writer input, answer) for one instruction about the scene: an edit, a pair of edits or a refusal.   [nb 09]

    The input is edit_prompt(source caption ("full" phrasing), instruction). The answer is the edit
    in the world's canonical instruction language (shapes.instruction; two edits joined by
    EDIT_JOINER), which resolve_edit turns into the target caption, or a refusal (REFUSALS): an object
    the scene does not hold, an ambiguous referent, an unsupported word, two contradicting edits.
    g: a torch.Generator or an int seed (draws the edits); rng: a random.Random or an int seed (the words).
    """
    check_split(split)
    shapes.check_scene(scene)
    g = noise.as_generator(g, "g")
    if g is None:
        raise CourseInputError("g must be a torch.Generator or an int seed (it draws the edits), got None.")
    return _instruction_example(scene, g, as_rng(rng), split)


def _instruction_example(scene: shapes.Scene, g: torch.Generator, rng: random.Random, split: str) -> tuple[str, str]:
    source = shapes.caption(scene, "full")
    u = rng.random()
    prefix = rng.choice(entries(INSTRUCTION_PREFIXES, split))
    if u < 0.62 or not scene.objects:  # one edit
        edit = shapes.random_edit(scene, g, allow_heldout=split == "test")
        text, answer = _phrase_and_answer(scene, edit, rng, split)
        return edit_prompt(source, prefix + text), answer
    if u < 0.76:  # two edits (a contradiction when they change the same thing: the world refuses it)
        first, second, _ = _two_edits(scene, g, rng)
        if second is not None:
            joiner = rng.choice(entries(INSTRUCTION_JOINERS, split))
            (t1, a1), (t2, a2) = _phrase_and_answer(scene, first, rng, split), _phrase_and_answer(scene, second, rng, split)
            return edit_prompt(source, prefix + t1 + joiner + t2), a1 + EDIT_JOINER + a2
    if u < 0.88:  # an object the scene does not hold, or an ambiguous one
        kind = rng.choice(["colour", "shape", "remove"])
        absent_shapes = [s for s in shapes.SHAPES if s not in {o.shape for o in scene.objects}]
        repeated = [s for s in shapes.SHAPES if sum(o.shape == s for o in scene.objects) > 1]
        empty = scene.free_cells()
        options = [("shape", s) for s in absent_shapes] + [("ambiguous", s) for s in repeated] + \
                  [("cell", c) for c in empty]
        what, value = rng.choice([o for o in options if o[0] == "ambiguous"] if repeated and rng.random() < 0.4
                                 else options)
        if what == "cell":
            r, ref = f"the thing {rng.choice(POSITION_WORDS[value])}", f"the thing {shapes.POSITION_PHRASES[value]}"
        else:
            r, ref = f"the {rng.choice(SHAPE_WORDS[value])[0]}", f"the {value}"
        frame = rng.choice(entries(INSTRUCTION_FRAMES[kind], split))
        colour, shape = rng.choice(list(shapes.COLOURS)), rng.choice(shapes.SHAPES)
        c, s = rng.choice(COLOUR_WORDS[colour]), rng.choice(SHAPE_WORDS[shape])[0]
        answer = {"colour": f"make {ref} {colour}", "shape": f"turn {ref} into a {shape}", "remove": f"remove {ref}"}[kind]
        return edit_prompt(source, prefix + frame.format(r=r, c=c, s=s)), answer  # the world refuses it
    # an unsupported colour or shape
    kind = rng.choice(["colour", "shape"])
    word = rng.choice(entries(UNSUPPORTED[kind], split))
    if kind == "colour":
        k = rng.randrange(len(scene.objects))
        frame = rng.choice(entries(INSTRUCTION_FRAMES["colour"], split))
        return edit_prompt(source, prefix + frame.format(r=_referent(scene, k, rng, split)[0], c=word)), f"unsupported: {word}"
    if len(scene.objects) < shapes.MAX_OBJECTS and rng.random() < 0.5:
        cell = rng.choice(scene.free_cells())
        frame = rng.choice(entries(INSTRUCTION_FRAMES["add"], split))
        c = rng.choice(COLOUR_WORDS[rng.choice(list(shapes.COLOURS))])
        text = frame.format(o=f"a {c} {word} {rng.choice(POSITION_WORDS[cell])}")
    else:
        k = rng.randrange(len(scene.objects))
        frame = rng.choice(entries(INSTRUCTION_FRAMES["shape"], split))
        text = frame.format(r=_referent(scene, k, rng, split)[0], s=word)
    return edit_prompt(source, prefix + text), f"unsupported: {word}"
