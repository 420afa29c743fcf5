"""Language models in the loop: a prompt writer trained here, and editing from plain instructions.   [notebook 09]

The text-to-image model reads its prompt through a text encoder whose tokenizer knows 43 words
(course_lib.text). A person writes "a crimson ball in the upper left" or "make the ball blue". A
small causal language model (transformers' GPT2LMHeadModel, 4 layers, its own byte-level BPE
tokenizer), trained here on pairs the shapes world generates, rewrites both into what the image
model and the editing methods were built for:

    request                      "show me a crimson ball in the upper left"
      -> caption                 "a red circle in the top left"
    source caption <|scene|> instruction
                                 "a red circle on the left, on a black background<|scene|>make the ball blue"
      -> canonical instruction   "make the red circle on the left blue"
      -> target caption          "a blue circle on the left, on a black background"   (the world applies it)

The writer answers in the world's own small languages: a caption (objects in the order the request
names them; resolve_request sorts them into reading order) and the canonical instruction of
shapes.instruction, which shapes.read_instruction and apply_edit execute (resolve_edit), the way a
chat model's tool call is executed by the program that receives it. So the model resolves the words
("the ball", "dark", "the thing up top") and the world keeps everything else exactly.

or into one of a few refusals, each a clear message (`WriterError`):

    "unsupported: <word>"        a colour or shape the world does not have ("purple", "hexagon")
    "too many objects"           more than shapes.MAX_OBJECTS objects
    "not in the scene: <thing>"  an instruction about an object the scene does not hold
    "ambiguous: <thing>"         "the circle" in a scene with two circles
    "contradiction"              two instructions that cannot both hold ("make it red and blue")

This is prompt expansion (seed 003's LLM step, without LangChain, which trains nothing): the
language model writes text; the diffusion model draws. Seed 002's fine-tuned GPT-3 "generating
images" does not exist: a causal LM trained with cross-entropy outputs tokens.

The data: `request_example` and `instruction_example` turn a scene (and an edit) into a free
phrasing and its canonical answer. Every word list holds training entries and held-out entries
(HELD_OUT): split "train" draws only the former, split "test" only the latter (new frames, word
orders and joiners, made of words the training phrasings use, plus unseen typos and unseen
unsupported words). Scenes come from shapes split "train" for training and "test"/"heldout" for
measuring, so no measured request describes a training scene; requests naming a held-out
colour-shape pair (shapes.HELDOUT_PAIRS) are never in training. What the writer leaves open it
fills the same way every time: an object without a shape is a square (DEFAULT_SHAPE), a lone
object without a position is in the middle.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from course_lib import checkpoints, models, shapes, training
from course_lib.validation import CourseInputError

NAME = "prompt_writer"  # data/prompt_writer: GPT2LMHeadModel + its tokenizer
SEP, SCENE, END, PAD = "<|sep|>", "<|scene|>", "<|endoftext|>", "<|pad|>"
SPECIAL = (PAD, END, SEP, SCENE)
MAX_LENGTH = 128  # tokens of prompt + answer; the longest example is about 90 (tests/test_language.py)
MAX_NEW_TOKENS = 64
DEFAULT_SHAPE = "square"
DEFAULT_CELL = (1, 1)
WRITER_CONFIG = dict(n_embd=128, n_layer=4, n_head=4, n_positions=MAX_LENGTH)
VOCAB_SIZE = 600

# ----------------------------------------------------------------------------------------------
# Words and frames: (training entries, held-out entries)
# ----------------------------------------------------------------------------------------------

COLOUR_WORDS = {"red": ["red", "crimson"], "green": ["green", "emerald"], "blue": ["blue", "navy"],
                "yellow": ["yellow", "golden"]}
SHAPE_WORDS = {"circle": [("circle", "circles"), ("ball", "balls"), ("disc", "discs")],
               "square": [("square", "squares"), ("box", "boxes"), ("block", "blocks")],
               "triangle": [("triangle", "triangles"), ("wedge", "wedges")]}
BACKGROUND_WORDS = {"black": ["black", "dark"], "grey": ["grey", "gray"], "white": ["white"]}
POSITION_WORDS = {
    (0, 0): ["in the top left", "in the upper left", "at the top left", "in the top left corner"],
    (0, 1): ["at the top", "at the top centre", "in the top middle", "up top"],
    (0, 2): ["in the top right", "in the upper right", "at the top right", "in the top right corner"],
    (1, 0): ["on the left", "at the left", "on the left side", "in the middle left"],
    (1, 1): ["in the middle", "in the centre", "in the center", "at the center"],
    (1, 2): ["on the right", "at the right", "on the right side", "in the middle right"],
    (2, 0): ["in the bottom left", "in the lower left", "at the bottom left", "in the bottom left corner"],
    (2, 1): ["at the bottom", "at the bottom centre", "in the bottom middle", "down at the bottom"],
    (2, 2): ["in the bottom right", "in the lower right", "at the bottom right", "in the bottom right corner"],
}
COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}
# Colours and shapes the world does not have: training refuses the first list, measuring uses the second.
UNSUPPORTED = {"colour": (["purple", "orange", "pink", "brown"], ["violet", "cyan", "magenta"]),
               "shape": (["hexagon", "star", "heart", "pentagon"], ["oval", "cross", "diamond"])}

# One object: {d} determiner, {c} colour word, {s} shape word, {p} position words
OBJECT_FRAMES = (["{d} {c} {s} {p}", "{p}, {d} {c} {s}", "{d} {s} in {c} {p}", "{d} {c} {s} placed {p}"],
                 ["{d} {s}, {c}, {p}", "{p} {d} {c} {s}", "{d} {s} placed {p} in {c}"])
VAGUE_OBJECT_FRAMES = (["something {c} {p}", "{d} {c} thing {p}", "{d} {c} shape {p}"],
                       ["{p}, something {c}", "{p} {d} {c} thing"])
COUNT_FRAMES = (["{n} {c} {s} {p}", "{n} {s} in {c} {p}"], ["{p}, {n} {c} {s}"])
JOINERS = ([" and ", ", ", " plus "], [" with ", ", and ", " and also "])
PREFIXES = (["", "draw ", "show me ", "i want ", "please draw ", "an image of ", "paint ", "a picture of ", "generate ",
             "ok, show me ", "just draw "],
            ["please show me ", "i want an image of ", "generate a picture of ", "draw me "])
BACKGROUND_FRAMES = ([", on a {b} background", " on {b}", " against a {b} backdrop", " with a {b} background",
                      ", all on {b}"],
                     [", against {b}", " with a {b} backdrop", ", all on a {b} background"])
RELATION_FRAMES = {"above": (["{x} above {y}", "{y} below {x}", "{y} under {x}", "{y}, with {x} above it"],
                             ["{x}, and below it {y}", "{y}, and {x} placed above it"]),
                   "left": (["{x} to the left of {y}", "{y} to the right of {x}"], ["{y}, and to the left of it {x}"])}
DETERMINERS = (["a", "one"], ["a"])
ALONE_FRAMES = (["{d} {c} {s}"], ["just {d} {c} {s}"])  # a single object with no position: the middle

# Instructions: {r} a referent of an object, {c} colour, {s} shape, {b} background, {o} a new object
INSTRUCTION_FRAMES = {
    "colour": (["make {r} {c}", "colour {r} {c}", "paint {r} {c}", "change {r} to {c}", "{r} should be {c}"],
               ["please make {r} {c}", "i want {r} to be {c}", "change the colour of {r} to {c}"]),
    "shape": (["turn {r} into a {s}", "make {r} a {s}", "change {r} into a {s}", "replace {r} with a {s}"],
              ["{r} should be a {s}", "i want {r} to be a {s}", "please turn {r} into a {s}"]),
    "background": (["make the background {b}", "change the background to {b}", "paint the background {b}",
                    "use a {b} background"],
                   ["i want a {b} background", "the background should be {b}", "change the backdrop to {b}"]),
    "remove": (["remove {r}", "delete {r}", "take away {r}", "get rid of {r}"],
               ["please delete {r}", "take {r} away", "please get rid of {r}"]),
    "add": (["add {o}", "put {o}", "place {o}", "draw {o}", "add {o} too"], ["please put {o}", "i want {o} too",
                                                                             "also add {o}"]),
}
INSTRUCTION_JOINERS = ([" and ", ", then ", " and then ", " also "], [", and ", " and also "])
INSTRUCTION_PREFIXES = (["", "please ", "now "], ["ok, ", "now please "])
# Referents of object k: "the {s}" (shape unique), "the {c} {s}" (pair unique), "the {c} one" (colour unique),
# "the {s} {p}", "the {c} {s} {p}", "the thing {p}" (always unique)
REFERENT_FRAMES = ("the {s}", "the {c} {s}", "the {c} one", "the {s} {p}", "the {c} {s} {p}", "the thing {p}")

EDIT_JOINER = " ; "  # between the canonical instructions of two edits in one answer
HELD_OUT = 1  # index of the held-out entries in every (train, held-out) pair above
REFUSALS = ("unsupported: ", "too many objects", "not in the scene: ", "ambiguous: ", "contradiction")
TYPO_RATE = 0.2  # share of training requests and instructions with one typo


def _entries(pair, split: str):
    return pair[HELD_OUT] if split == "test" else pair[0]


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise CourseInputError(f"split must be 'train' or 'test', got {split!r}.")


def typo(word: str, rng: random.Random) -> str:
    """Return `word` with one typing error: two letters swapped, one dropped, one doubled or one replaced."""
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    if kind == 2:
        return word[:i] + word[i] + word[i:]
    return word[:i] + rng.choice("aeiourstnl") + word[i + 1:]


def add_typo(text: str, rng: random.Random) -> str:
    """Return the text with one typo in one of its words of 4+ letters (unchanged if it has none)."""
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not long:
        return text
    i = rng.choice(long)
    words[i] = typo(words[i], rng)
    return " ".join(words)


# ----------------------------------------------------------------------------------------------
# Requests -> captions
# ----------------------------------------------------------------------------------------------

def _object_words(o: shapes.ShapeObject, rng, split, *, plural=False):
    c = rng.choice(COLOUR_WORDS[o.colour])
    s = rng.choice(SHAPE_WORDS[o.shape])[1 if plural else 0]
    return c, s


def _phrase_object(o, rng, split, *, vague=False, position=True):
    c, s = _object_words(o, rng, split)
    d = rng.choice(_entries(DETERMINERS, split))
    p = rng.choice(POSITION_WORDS[o.cell])
    if not position:
        return rng.choice(_entries(ALONE_FRAMES, split)).format(d=d, c=c, s=s)
    frames = VAGUE_OBJECT_FRAMES if vague else OBJECT_FRAMES
    return rng.choice(_entries(frames, split)).format(d=d, c=c, s=s, p=p)


def _join(parts, rng, split):
    joiners = _entries(JOINERS, split)
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
    body = shapes._join([f"a {o.noun} {shapes.POSITION_PHRASES[o.cell]}" for o in objects])
    return body if background is None else f"{body}, on a {background} background"


def request_example(scene: shapes.Scene, rng: random.Random, split: str = "train") -> tuple[str, str, shapes.Scene | None]:
    """Return (free request, canonical answer, the scene the answer describes) for a scene.   [nb 09]

    The request names every object (synonyms, frames, counts for repeated objects, a relation for
    some two-object scenes, a vague "something red" now and then) and sometimes the background;
    the answer is a caption of the scene with the objects in the request's order, in the "objects"
    phrasing (or with the background when the request names it; "relation" for a relation request);
    resolve_request puts them in reading order. split "train" draws training
    entries only, "test" held-out entries only. The third item is None for a refusal.
    """
    _check_split(split)
    objects = list(scene.objects)
    if not objects:
        raise CourseInputError("request_example needs a scene with at least one object.")
    vague: set[int] = set()
    # a relation between two objects: its own phrasing, no cells, no background
    if len(objects) == 2 and rng.random() < 0.25:
        rel = "left" if objects[0].col != objects[1].col else "above"
        a, b = objects if rel == "above" or objects[0].col < objects[1].col else objects[::-1]
        x, y = (f"a {' '.join(_object_words(o, rng, split))}" for o in (a, b))
        body = rng.choice(_entries(RELATION_FRAMES[rel], split)).format(x=x, y=y)
        answer = shapes.caption(scene, "relation")
        return rng.choice(_entries(PREFIXES, split)) + body, answer, scene
    # the objects: repeated (colour, shape) pairs as counts, the others one by one, in a random order
    groups: dict[tuple[str, str], list[shapes.ShapeObject]] = {}
    for o in objects:
        groups.setdefault((o.colour, o.shape), []).append(o)
    parts = []  # (text, the objects it names, in its order)
    for (colour, shape), members in groups.items():
        if len(members) > 1 and rng.random() < 0.7:
            positions = [rng.choice(POSITION_WORDS[o.cell]) for o in members]
            c, s = _object_words(members[0], rng, split, plural=True)
            p = ", ".join(positions[:-1]) + " and " + positions[-1]
            parts.append((rng.choice(_entries(COUNT_FRAMES, split)).format(n=COUNT_WORDS[len(members)], c=c, s=s, p=p),
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
        body += rng.choice(_entries(BACKGROUND_FRAMES, split)).format(b=rng.choice(BACKGROUND_WORDS[scene.background]))
    target = _with_defaults(scene, vague)
    order = [target.objects[k] for _, ks in parts for k in ks]  # the writer names them as the request does
    answer = _objects_caption(order, target.background if named_background else None)
    return rng.choice(_entries(PREFIXES, split)) + body, answer, target


def refusal_request(scene: shapes.Scene, rng: random.Random, split: str = "train") -> tuple[str, str]:
    """Return (request the world cannot satisfy, refusal): an unsupported colour or shape word, or too many objects."""
    _check_split(split)
    request, _, _ = request_example(scene, rng, split)
    if rng.random() < 0.2:
        n = rng.choice([4, 5])
        c, s = _object_words(scene.objects[0], rng, split, plural=True)
        return rng.choice(_entries(PREFIXES, split)) + f"{COUNT_WORDS[n]} {c} {s}", "too many objects"
    kind = rng.choice(["colour", "shape"])
    words = sorted({w for ws in COLOUR_WORDS.values() for w in ws}) if kind == "colour" else \
        sorted({w for ws in SHAPE_WORDS.values() for pair in ws for w in pair})
    present = [w for w in words if re.search(rf"\b{w}\b", request)]
    if not present:
        return refusal_request(scene, rng, split)
    word = rng.choice(_entries(UNSUPPORTED[kind], split))
    request = re.sub(rf"\b{rng.choice(present)}\b", word, request, count=1)
    return request, f"unsupported: {word}"


# ----------------------------------------------------------------------------------------------
# Instructions -> target captions
# ----------------------------------------------------------------------------------------------

def _referents(scene: shapes.Scene, k: int) -> list[str]:
    o = scene.objects[k]
    same_shape = sum(x.shape == o.shape for x in scene.objects)
    same_pair = sum((x.colour, x.shape) == (o.colour, o.shape) for x in scene.objects)
    same_colour = sum(x.colour == o.colour for x in scene.objects)
    ok = [same_shape == 1, same_pair == 1, same_colour == 1, True, True, True]
    return [f for f, good in zip(REFERENT_FRAMES, ok) if good]


def _referent(scene, k, rng):
    o = scene.objects[k]
    frame = rng.choice(_referents(scene, k))
    c, s = _object_words(o, rng, "train")
    return frame.format(c=c, s=s, p=rng.choice(POSITION_WORDS[o.cell]))


def phrase_edit(scene: shapes.Scene, edit: shapes.Edit, rng: random.Random, split: str = "train") -> str:
    """Return a free instruction for one edit of the scene (an unambiguous referent, a frame of `split`).   [nb 09]"""
    _check_split(split)
    frame = rng.choice(_entries(INSTRUCTION_FRAMES[edit.kind], split))
    if edit.kind == "background":
        return frame.format(b=rng.choice(BACKGROUND_WORDS[edit.value]))
    if edit.kind == "add":
        o = edit.obj
        c, s = _object_words(o, rng, split)
        return frame.format(o=f"{rng.choice(_entries(DETERMINERS, split))} {c} {s} {rng.choice(POSITION_WORDS[o.cell])}")
    r = _referent(scene, edit.index, rng)
    if edit.kind == "colour":
        return frame.format(r=r, c=rng.choice(COLOUR_WORDS[edit.value]))
    if edit.kind == "shape":
        return frame.format(r=r, s=rng.choice(SHAPE_WORDS[edit.value])[0])
    return frame.format(r=r)


def edit_prompt(source_caption: str, instruction: str) -> str:
    """Return the writer's input for an edit: '<source caption><|scene|><instruction>'."""
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


def instruction_example(scene: shapes.Scene, g: torch.Generator, rng: random.Random,
                        split: str = "train") -> tuple[str, str]:
    """Return (writer input, answer) for one instruction about the scene: an edit, a pair of edits or a refusal.   [nb 09]

    The input is edit_prompt(source caption ("full" phrasing), instruction). The answer is the edit
    in the world's canonical instruction language (shapes.instruction; two edits joined by
    EDIT_JOINER), which resolve_edit turns into the target caption, or a refusal (REFUSALS): an object
    the scene does not hold, an ambiguous referent, an unsupported word, two contradicting edits.
    """
    _check_split(split)
    source = shapes.caption(scene, "full")
    u = rng.random()
    prefix = rng.choice(_entries(INSTRUCTION_PREFIXES, split))
    if u < 0.62 or not scene.objects:  # one edit
        edit = shapes.random_edit(scene, g, allow_heldout=split == "test")
        return edit_prompt(source, prefix + phrase_edit(scene, edit, rng, split)), shapes.instruction(scene, edit)
    if u < 0.76:  # two edits
        first, second, contradiction = _two_edits(scene, g, rng)
        if second is not None:
            joiner = rng.choice(_entries(INSTRUCTION_JOINERS, split))
            text = prefix + phrase_edit(scene, first, rng, split) + joiner + phrase_edit(scene, second, rng, split)
            if contradiction:
                return edit_prompt(source, text), "contradiction"
            return edit_prompt(source, text), shapes.instruction(scene, first) + EDIT_JOINER + shapes.instruction(scene, second)
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
            r, answer = f"the thing {rng.choice(POSITION_WORDS[value])}", f"not in the scene: {shapes.POSITIONS[value]}"
        else:
            word = rng.choice(SHAPE_WORDS[value])[0]
            r = f"the {word}"
            answer = f"ambiguous: {value}" if what == "ambiguous" else f"not in the scene: {value}"
        frame = rng.choice(_entries(INSTRUCTION_FRAMES[kind], split))
        c = rng.choice(COLOUR_WORDS[rng.choice(list(shapes.COLOURS))])
        s = rng.choice(SHAPE_WORDS[rng.choice(shapes.SHAPES)])[0]
        return edit_prompt(source, prefix + frame.format(r=r, c=c, s=s)), answer
    # an unsupported colour or shape
    kind = rng.choice(["colour", "shape"])
    word = rng.choice(_entries(UNSUPPORTED[kind], split))
    if kind == "colour":
        k = rng.randrange(len(scene.objects))
        frame = rng.choice(_entries(INSTRUCTION_FRAMES["colour"], split))
        return edit_prompt(source, prefix + frame.format(r=_referent(scene, k, rng), c=word)), f"unsupported: {word}"
    if len(scene.objects) < shapes.MAX_OBJECTS and rng.random() < 0.5:
        cell = rng.choice(scene.free_cells())
        frame = rng.choice(_entries(INSTRUCTION_FRAMES["add"], split))
        c = rng.choice(COLOUR_WORDS[rng.choice(list(shapes.COLOURS))])
        text = frame.format(o=f"a {c} {word} {rng.choice(POSITION_WORDS[cell])}")
    else:
        k = rng.randrange(len(scene.objects))
        frame = rng.choice(_entries(INSTRUCTION_FRAMES["shape"], split))
        text = frame.format(r=_referent(scene, k, rng), s=word)
    return edit_prompt(source, prefix + text), f"unsupported: {word}"


# ----------------------------------------------------------------------------------------------
# The data set, the tokenizer and the model
# ----------------------------------------------------------------------------------------------

def normalise(text: str) -> str:
    """Return the text as the writer reads it: lower case, single spaces, no surrounding spaces or final full stop."""
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(".").strip()


def examples(n: int, seed: int = 0, split: str = "train", *, typo_rate: float = TYPO_RATE,
             kinds=("request", "instruction", "request", "instruction", "refusal")) -> list[tuple[str, str, str]]:
    """Return n (kind, writer input, answer) examples of `split`, kinds in turn, deterministic by seed.   [nb 09]

    split "train": shapes split "train" scenes and training phrasings; "test": shapes split "test"
    scenes (a third of them "heldout", with an unseen colour-shape pair) and held-out phrasings.
    A share typo_rate of the requests and instructions carries one typo.
    """
    _check_split(split)
    rng = random.Random(f"{split}-{seed}")
    g = torch.Generator().manual_seed(seed * 2 + (split == "test"))
    out = []
    while len(out) < n:
        shape_split = "train" if split == "train" else ("heldout" if len(out) % 3 == 2 else "test")
        for scene in shapes.sample_scenes(64, split=shape_split, generator=g):
            if len(out) == n:
                break
            kind = kinds[len(out) % len(kinds)]
            if kind == "request":
                prompt, answer, _ = request_example(scene, rng, split)
            elif kind == "refusal":
                prompt, answer = refusal_request(scene, rng, split)
            else:
                prompt, answer = instruction_example(scene, g, rng, split)
            if rng.random() < typo_rate:
                head, sep, tail = prompt.rpartition(SCENE)
                prompt = head + sep + add_typo(tail, rng)
            out.append((kind, normalise(prompt) if SCENE not in prompt else prompt, answer))
    return out


def build_tokenizer(texts, vocab_size: int = VOCAB_SIZE):
    """Train a byte-level BPE tokenizer (GPT-2's kind) on the texts; return it as a PreTrainedTokenizerFast.   [nb 09]"""
    from tokenizers import Tokenizer, decoders, models as tok_models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(tok_models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=END, bos_token=END,
                                   additional_special_tokens=[SEP, SCENE], padding_side="left")


def encode_examples(tokenizer, pairs, max_length: int = MAX_LENGTH) -> dict[str, torch.Tensor]:
    """Return {"input_ids", "attention_mask", "labels"} (N, max_length): prompt SEP answer END, loss on the answer only."""
    ids, labels = [], []
    for prompt, answer in pairs:
        p = tokenizer.encode(prompt + SEP, add_special_tokens=False)
        a = tokenizer.encode(answer + END, add_special_tokens=False)
        if len(p) + len(a) > max_length:
            raise CourseInputError(f"an example of {len(p) + len(a)} tokens exceeds max_length={max_length}: {prompt!r}.")
        pad = max_length - len(p) - len(a)
        ids.append(p + a + [tokenizer.pad_token_id] * pad)
        labels.append([-100] * len(p) + a + [-100] * pad)
    ids = torch.tensor(ids)
    return {"input_ids": ids, "attention_mask": (ids != tokenizer.pad_token_id).long(), "labels": torch.tensor(labels)}


def make_model(tokenizer, seed: int = 0):
    """Return a fresh GPT2LMHeadModel of WRITER_CONFIG for the tokenizer (seeded weights)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **WRITER_CONFIG)
    with models.seeded(seed):
        return GPT2LMHeadModel(config)


def lm_loss(model, batch, generator=None) -> torch.Tensor:
    """Return the next-token cross-entropy on the answer tokens (labels -100 elsewhere): the causal LM's loss.   [nb 09]

    The batch is cut to its longest example first (examples are padded on the right to MAX_LENGTH).
    """
    length = int(batch["attention_mask"].sum(1).max())
    return model(**{k: v[:, :length] for k, v in batch.items()}).loss


# ----------------------------------------------------------------------------------------------
# The writer
# ----------------------------------------------------------------------------------------------

def known_words() -> frozenset[str]:
    """Return every word a training phrasing can use: the training entries of the word lists and the world's words."""
    texts = list(shapes.vocabulary()) + list(COUNT_WORDS.values()) + list(REFERENT_FRAMES) + [SCENE]
    texts += [w for ws in COLOUR_WORDS.values() for w in ws] + [w for ws in BACKGROUND_WORDS.values() for w in ws]
    texts += [w for ws in SHAPE_WORDS.values() for pair in ws for w in pair] + [w for ws in POSITION_WORDS.values() for w in ws]
    texts += [w for kind in UNSUPPORTED.values() for w in kind[0]]
    for pair in (OBJECT_FRAMES, VAGUE_OBJECT_FRAMES, COUNT_FRAMES, JOINERS, PREFIXES, BACKGROUND_FRAMES, DETERMINERS,
                 ALONE_FRAMES, INSTRUCTION_JOINERS, INSTRUCTION_PREFIXES, *RELATION_FRAMES.values(),
                 *INSTRUCTION_FRAMES.values()):
        texts += pair[0]
    return frozenset(w for t in texts for w in re.findall(r"[a-z]+", re.sub(r"\{\w+\}", " ", t)))


def _one_edit_apart(a: str, b: str) -> bool:
    # Damerau-Levenshtein distance <= 1: one letter replaced, dropped, added, or two neighbours swapped
    if a == b:
        return True
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                                  and a[diff[1]] == b[diff[0]])
    if abs(len(a) - len(b)) != 1:
        return False
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long[k]), len(short))
    return short[i:] == long[i + 1:]


_KNOWN: frozenset[str] | None = None


def unknown_word(text: str) -> str | None:
    """Return the first word of `text` the writer never saw in training and that is no typo of one, else None.   [nb 09]

    The writer's guard: a tiny model cannot know what a word it never read means ("violet"), so
    rather than let it guess a caption, the writer refuses and names the word.
    """
    global _KNOWN
    if _KNOWN is None:
        _KNOWN = known_words()
    for word in re.findall(r"[a-z]+", text.lower()):
        if word not in _KNOWN and not any(_one_edit_apart(word, k) for k in _KNOWN if abs(len(k) - len(word)) <= 1):
            return word
    return None


class WriterError(CourseInputError):
    """The writer refused: the request or instruction asks what the shapes world cannot do."""


@dataclass
class PromptWriter:
    """A causal LM and its tokenizer that rewrite requests into captions and instructions into target captions.   [nb 09]"""

    model: torch.nn.Module
    tokenizer: object

    @torch.no_grad()
    def generate(self, prompts, *, batch_size: int = 256) -> list[str]:
        """Return the raw answer to each writer input (greedy decoding, at most MAX_NEW_TOKENS tokens)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        self.model.eval()
        out = []
        device = models.model_device(self.model)
        for i in range(0, len(prompts), batch_size):
            chunk = [p + SEP for p in prompts[i: i + batch_size]]
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            ids = self.model.generate(**enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1,
                                      pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id)
            answers = self.tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out.extend(a.strip() for a in answers)
        return out

    def answer(self, prompts, *, guard: bool = True) -> list[str]:
        """Return generate()'s answers, with the guard first: a text with a word the writer never saw gets "unsupported: <word>"."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        out = self.generate(prompts)
        if guard:
            words = [unknown_word(p.split(SCENE)[-1]) for p in prompts]
            out = [a if w is None else f"unsupported: {w}" for a, w in zip(out, words)]
        return out

    def caption(self, request: str) -> str:
        """Return the canonical caption for a free request, or raise WriterError with what the world cannot do."""
        request = check_text(request, "request")
        return resolve_request(self.answer([normalise(request)])[0], request)

    def target_caption(self, source_caption: str, instruction: str) -> str:
        """Return the target caption of an instruction about the scene of source_caption, or raise WriterError."""
        shapes.parse_caption(check_text(source_caption, "source_caption"))
        instruction = check_text(instruction, "instruction")
        answer = self.answer([edit_prompt(source_caption, normalise(instruction))])[0]
        target = resolve_edit(answer, source_caption, instruction)
        if target == source_caption:
            raise WriterError(f"the instruction {instruction!r} changes nothing in {source_caption!r}.")
        return target


def check_text(value, name: str) -> str:
    """Return value if it is a non-empty string, else raise naming it."""
    if not isinstance(value, str):
        raise CourseInputError(f"{name} must be a string, got {type(value).__name__}.")
    if not value.strip():
        raise CourseInputError(f"{name} is empty; write what you want, e.g. 'make the circle blue'.")
    return value


def _scene_words(caption: str) -> str:
    return shapes._join([f"a {o['colour']} {o['shape']} {shapes.POSITION_PHRASES[(o['row'], o['col'])]}"
                         for o in shapes.parse_caption(caption)["objects"]]) or "no objects"


WORLD = (f"the shapes world has the colours {', '.join(shapes.COLOURS)}, the shapes {', '.join(shapes.SHAPES)} "
         f"and the backgrounds {', '.join(shapes.BACKGROUNDS)}")
RELATION = re.compile(r"^a (\w+) (\w+) (above|to the left of) a (\w+) (\w+)$")


def check_refusal(answer: str, text: str, source_caption: str | None = None) -> None:
    """Raise WriterError with a clear message when the writer's answer is a refusal (REFUSALS); else return."""
    scene = f"; the scene holds {_scene_words(source_caption)}" if source_caption else ""
    if answer.startswith("unsupported: "):
        raise WriterError(f"{text!r}: the shapes world has no {answer.split(': ', 1)[1]!r} ({WORLD}).")
    if answer == "too many objects":
        raise WriterError(f"{text!r}: a scene holds at most {shapes.MAX_OBJECTS} objects.")
    if answer.startswith("not in the scene: "):
        raise WriterError(f"{text!r}: there is no {answer.split(': ', 1)[1]} in the scene{scene}.")
    if answer.startswith("ambiguous: "):
        raise WriterError(f"{text!r}: which {answer.split(': ', 1)[1]}? Name it by colour or position{scene}.")
    if answer == "contradiction":
        raise WriterError(f"{text!r}: the instructions contradict each other; give one of them.")


def resolve_request(answer: str, request: str) -> str:
    """Return the canonical caption of the writer's answer to a request: its objects in reading order.   [nb 09]

    The writer names the objects in the request's order; shapes.caption sorts them (the order the
    image model was trained on). A relation answer ("a red circle above a blue square") stays as it is.
    """
    check_refusal(answer, request)
    relation = RELATION.match(answer)
    try:
        if relation:
            c1, s1, _, c2, s2 = relation.groups()
            for c, sh in ((c1, s1), (c2, s2)):
                shapes.ShapeObject(sh, c, 1, 1)  # known words, or a clear error
            return answer
        d = shapes.parse_caption(answer)
        scene = shapes.Scene.from_dict({"background": d["background"] or "black", "objects": d["objects"]})
        return shapes.caption(scene, "full" if d["background"] else "objects")
    except CourseInputError as error:
        raise WriterError(f"{request!r}: the writer's answer {answer!r} is not a scene of the shapes world ({error}); "
                          f"rephrase the request.") from None


def resolve_edit(answer: str, source_caption: str, instruction: str) -> str:
    """Return the target caption: the writer's canonical instruction(s) read against the source scene and applied.   [nb 09]

    The writer answers in the world's own instruction language (shapes.instruction, joined by
    EDIT_JOINER for two edits), and the shapes world executes it; so the target caption differs from
    the source exactly where the instruction says, and nowhere else.
    """
    check_refusal(answer, instruction, source_caption)
    scene = shapes.scene_from_caption(source_caption)
    try:
        edits = [shapes.read_instruction(scene, part) for part in answer.split(EDIT_JOINER)]
        target = scene
        for edit in sorted(edits, key=lambda e: e.kind in ("add", "remove")):  # recolour before indices move
            target = shapes.apply_edit(target, edit)
    except CourseInputError as error:
        raise WriterError(f"{instruction!r}: the writer's answer {answer!r} is not an edit of this scene ({error}).") from None
    return shapes.caption(target, "full")


def resolved(kind: str, prompt: str, answer: str) -> str:
    """Return what an answer comes to: the canonical caption, the target caption, or the refusal itself ("invalid" if neither)."""
    if answer.startswith(REFUSALS):
        return answer
    try:
        if SCENE in prompt:
            source, instruction = prompt.split(SCENE)
            return resolve_edit(answer, source, instruction)
        return resolve_request(answer, prompt)
    except WriterError:
        return "invalid"


def save_writer(writer: PromptWriter, folder, **manifest) -> dict:
    """Save the model and its tokenizer in one folder (safetensors, tokenizer.json) with a manifest; return it."""
    folder = checkpoints.checkpoint_dir(folder)
    result = checkpoints.save_pretrained(writer.model, folder, **manifest)
    writer.tokenizer.save_pretrained(folder)
    return checkpoints.write_manifest(folder, class_path=result["class"], **{k: result.get(k) for k in (
        "name", "command", "train_config", "recipe", "data_seed", "steps", "wall_time_s", "metrics", "num_parameters")})


def load_writer(name_or_path: str | Path = NAME, device=None) -> PromptWriter:
    """Load a writer folder (hashes checked when it has a manifest) with AutoModelForCausalLM and AutoTokenizer.   [nb 09]

    The same two calls load any causal LM folder or hub id (load_instruction_model); a shipped
    checkpoint is verified first.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = checkpoints.checkpoint_dir(name_or_path)
    checkpoints.verify(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return PromptWriter(model.to(device or "cpu"), tokenizer)


# ----------------------------------------------------------------------------------------------
# Editing from an instruction
# ----------------------------------------------------------------------------------------------

EDIT_METHODS = ("mask_locking", "prompt_to_prompt", "inversion", "sdedit", "instruct_pix2pix")
DEFAULT_EDIT_METHOD = "mask_locking"  # the ShapesEdit table's best automatic row with two captions (nb 08)


@dataclass
class InstructionEdit:
    """What an instruction became: the edited image, the target caption the writer wrote, the canonical instruction."""

    image: torch.Tensor
    target_caption: str
    instruction: str


def edit_from_instruction(writer: PromptWriter, parts, image: torch.Tensor, source_caption: str, instruction: str, *,
                          method: str = DEFAULT_EDIT_METHOD, generator: torch.Generator | None = None,
                          **options) -> InstructionEdit:
    """Edit a locked image from a plain instruction: the writer writes the target caption, an editing method draws it.   [nb 09]

    method: an editing.METHODS name (with the text-to-image parts) or "instruct_pix2pix" (with
    instruct_pix2pix.load_parts(); it receives the canonical instruction of the one edit). A refusal
    (WriterError) or an instruction that is not one edit raises before anything is generated.
    """
    from course_lib import editing, instruct_pix2pix

    if method not in EDIT_METHODS:
        raise CourseInputError(f"method must be one of {EDIT_METHODS}, got {method!r}.")
    target = writer.target_caption(source_caption, instruction)
    canonical = shapes.canonical_instruction(source_caption, target) if method == "instruct_pix2pix" else \
        _instruction_or_none(source_caption, target)
    if method == "instruct_pix2pix":
        edited = instruct_pix2pix.edit(parts, image, canonical, generator=generator, **options)
    else:
        edited = editing.METHODS[method](parts, image, source_caption, target, generator=generator, **options)
    return InstructionEdit(edited, target, canonical or "")


def _instruction_or_none(source_caption: str, target_caption: str) -> str | None:
    try:
        return shapes.canonical_instruction(source_caption, target_caption)
    except CourseInputError:
        return None  # two edits at once: caption-based methods take them, there is no single canonical instruction


# ----------------------------------------------------------------------------------------------
# A real instruction-tuned language model as the prompt writer (GPU, weights reachable)
# ----------------------------------------------------------------------------------------------

REAL_WRITER = "Qwen/Qwen2.5-0.5B-Instruct"  # a small open instruction model (Apache-2.0)
EXPANSION_PROMPT = ("Rewrite the user's request as one short, concrete Stable Diffusion prompt: the subject, its colours "
                    "and where things are, then the style. Answer with the prompt only.")


def load_instruction_model(model_id: str = REAL_WRITER, device=None, *, dtype=None):
    """Return (AutoModelForCausalLM, AutoTokenizer) of a causal LM folder or hub id, in eval mode.   [nb 09]

    The same two from_pretrained calls load the course's writer folder (data/prompt_writer) and a
    real instruction model; float16 on CUDA by default, float32 elsewhere.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = torch.device(device) if device is not None else torch.device("cpu")
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    path = checkpoints.checkpoint_dir(model_id) if (checkpoints.checkpoint_dir(model_id)).is_dir() else model_id
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    return model, AutoTokenizer.from_pretrained(path)


@torch.no_grad()
def expand_prompt(model, tokenizer, request: str, *, max_new_tokens: int = 60) -> str:
    """Return a real LM's rewrite of a request into a Stable Diffusion prompt (its chat template when it has one).   [nb 09]"""
    request = check_text(request, "request")
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "system", "content": EXPANSION_PROMPT}, {"role": "user", "content": request}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = f"{EXPANSION_PROMPT}\nRequest: {request}\nPrompt:"
    enc = tokenizer(text, return_tensors="pt").to(models.model_device(model))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad)
    return tokenizer.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


# ----------------------------------------------------------------------------------------------
# Measuring the writer
# ----------------------------------------------------------------------------------------------

def _objects_of(caption: str) -> tuple[list[tuple], str | None] | None:
    try:
        d = shapes.parse_caption(caption)
    except CourseInputError:
        return None
    return sorted((o["colour"], o["shape"], o["row"], o["col"]) for o in d["objects"]), d["background"]


def attribute_scores(answer: str, expected: str) -> dict[str, bool]:
    """Return per-attribute verdicts of an answer against the expected caption: count, colour, shape, position, background, exact."""
    want, got = _objects_of(expected), _objects_of(answer)
    if want is None or got is None:
        bad = {k: False for k in ("count", "colour", "shape", "position", "background")}
        return {**bad, "exact": answer == expected}
    (wo, wb), (go, gb) = want, got
    by_cell_w = {(r, c): (col, s) for col, s, r, c in wo}
    by_cell_g = {(r, c): (col, s) for col, s, r, c in go}
    return {"count": len(wo) == len(go),
            "colour": sorted(o[0] for o in wo) == sorted(o[0] for o in go),
            "shape": sorted(o[1] for o in wo) == sorted(o[1] for o in go),
            "position": set(by_cell_w) == set(by_cell_g),
            "background": wb == gb, "exact": answer == expected}


def score_answers(answers: list[str], expected: list[str]) -> dict[str, float]:
    """Return the shares right: exact match, and per attribute over captions; refusals count only as exact."""
    if len(answers) != len(expected):
        raise CourseInputError(f"got {len(answers)} answers for {len(expected)} expected answers.")
    rows = [attribute_scores(a, e) for a, e in zip(answers, expected)]
    n = max(1, len(rows))
    return {k: sum(r[k] for r in rows) / n for k in ("exact", "count", "colour", "shape", "position", "background")}


def evaluate(writer: PromptWriter, n: int = 600, seed: int = 0, *, guard: bool = True) -> dict[str, float]:
    """Return the writer's exact-match accuracy on n held-out examples ('test' split), per kind.   [nb 09]

    Exact: the answer comes to the same caption, target caption or refusal as the right answer (resolved()).
    """
    cases = examples(n, seed, "test", typo_rate=0.2)
    answers = writer.answer([p for _, p, _ in cases], guard=guard)
    out = {}
    for kind in ("request", "refusal", "instruction"):
        rows = [(resolved(k, p, a), resolved(k, p, e)) for (k, p, e), a in zip(cases, answers) if k == kind]
        out[f"exact_{kind}"] = round(sum(a == e for a, e in rows) / max(1, len(rows)), 4)
    return out


def benchmark_instructions(cases: list[shapes.EditResult], seed: int = 0) -> list[str]:
    """Return one free instruction per ShapesEdit case, in held-out phrasings ('test' frames), deterministic by seed.   [nb 09]"""
    rng = random.Random(f"shapesedit-{seed}")
    return [rng.choice(_entries(INSTRUCTION_PREFIXES, "test")) + phrase_edit(c.source, c.edit, rng, "test") for c in cases]


def writer_targets(writer: PromptWriter, cases: list[shapes.EditResult], instructions: list[str]) -> list[str | None]:
    """Return the writer's target caption per case, or None where it refused or wrote no caption of one edit."""
    answers = writer.answer([edit_prompt(c.source_caption, normalise(i)) for c, i in zip(cases, instructions)])
    out = []
    for case, instruction, answer in zip(cases, instructions, answers):
        try:
            target = resolve_edit(answer, case.source_caption, instruction)
            shapes.caption_edit(case.source_caption, target)  # one edit, as ShapesEdit's cases
            out.append(target)
        except CourseInputError:
            out.append(None)
    return out


def request_set(n: int, seed: int = 0) -> list[tuple[str, str, shapes.Scene]]:
    """Return n (held-out request, canonical caption, scene) of 'test' scenes with cells the judge can check (no relations)."""
    rng = random.Random(f"requests-{seed}")
    out = []
    g = torch.Generator().manual_seed(seed)
    while len(out) < n:
        for scene in shapes.sample_scenes(64, split="test", generator=g):
            request, answer, target = request_example(scene, rng, "test")
            if len(out) < n and " above a " not in answer and " to the left of a " not in answer:
                out.append((normalise(request), answer, target))
    return out


def end_to_end(writer: PromptWriter, parts, n: int = 200, *, guidance_scale: float = 4.0, num_steps: int = 25,
               seed: int = 0) -> dict[str, dict[str, float]]:
    """Return the shapes judge's adherence of images drawn from the raw requests, the writer's captions and the true captions.   [nb 09]

    The same starting noise for the three rows (seeded by seed); a request the writer refused is
    drawn from its raw text (the image model has nothing else). The true-caption row is a reference.
    The judge checks every object's colour, shape and cell, the count, and the background where the
    request names one.
    """
    import warnings

    from course_lib import text, text2image

    rows = request_set(n, seed)
    requests, captions, _ = (list(x) for x in zip(*rows))
    written = []
    for request, answer in zip(requests, writer.answer(requests)):
        try:
            written.append(resolve_request(answer, request))
        except WriterError:
            written.append(request)
    out = {}
    for name, prompts in (("raw request", requests), ("prompt writer", written), ("true caption (reference)", captions)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", text.UnknownWordWarning)
            images = text2image.generate(parts, prompts, guidance_scale=guidance_scale, num_steps=num_steps,
                                         generator=torch.Generator().manual_seed(seed))
        out[name] = text2image.adherence(images, captions)  # the background is judged only where the request names it
    out["prompt writer"]["exact_caption"] = sum(w == c for w, c in zip(written, captions)) / n
    return out


# ----------------------------------------------------------------------------------------------
# Training (the course's one loop)
# ----------------------------------------------------------------------------------------------

TRAIN_EXAMPLES = 60_000
TRAIN_CONFIG = training.TrainConfig(steps=8000, batch_size=48, lr=2e-3, lr_schedule="cosine", lr_warmup_steps=200,
                                    weight_decay=0.01, ema_decay=0.0, grad_clip=1.0, seed=0, checkpoint_every=1000)
TRAIN_COMMAND = "python -m course_lib.language train --threads 1"


def train_writer(*, steps: int | None = None, num_examples: int = TRAIN_EXAMPLES, seed: int = 0, progress: bool = True,
                 state_dir=None) -> tuple[PromptWriter, training.TrainState]:
    """Train the tokenizer and the writer from scratch on `num_examples` training examples; return (writer, state)."""
    train = examples(num_examples, seed, "train")
    tokenizer = build_tokenizer([p for _, p, _ in train] + [a for _, _, a in train])
    data = encode_examples(tokenizer, [(p, a) for _, p, a in train])
    model = make_model(tokenizer, seed)
    config = TRAIN_CONFIG if steps is None else training.TrainConfig.from_dict({**TRAIN_CONFIG.to_dict(), "steps": steps})
    resume = state_dir if state_dir is not None and (Path(state_dir) / "trainer_state.json").is_file() else None
    state = training.train(model, data, lm_loss, config, device="cpu", progress=progress, checkpoint_dir=state_dir,
                           resume=resume)
    return PromptWriter(state.sampling_model.eval(), tokenizer), state


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m course_lib.language", description="Train the prompt writer.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the tokenizer and the writer from scratch; write data/prompt_writer")
    t.add_argument("--steps", type=int, default=None)
    t.add_argument("--out", default=NAME)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--state-dir", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    writer, state = train_writer(steps=args.steps, progress=False, state_dir=args.state_dir)
    metrics = evaluate(writer)
    metrics["final_loss_mean_last_100"] = round(sum(state.losses[-100:]) / max(1, len(state.losses[-100:])), 5)
    command = TRAIN_COMMAND if args.steps is None and args.out == NAME and args.threads == 1 else \
        "python -m course_lib.language train" + (f" --steps {args.steps}" if args.steps else "") + \
        (f" --out {args.out}" if args.out != NAME else "") + f" --threads {torch.get_num_threads()}"
    config = TRAIN_CONFIG if args.steps is None else training.TrainConfig.from_dict({**TRAIN_CONFIG.to_dict(), "steps": args.steps})
    manifest = save_writer(writer, args.out, name=NAME, command=command, train_config=config.to_dict(),
                           recipe={"description": "GPT2LMHeadModel prompt writer and its byte-level BPE tokenizer (nb 09)",
                                   "model_config": WRITER_CONFIG, "vocab_size": len(writer.tokenizer),
                                   "data": f"course_lib.language.examples({TRAIN_EXAMPLES}, seed=0, split='train')",
                                   "loss": "course_lib.language.lm_loss (cross-entropy on the answer tokens)",
                                   "torch_threads": torch.get_num_threads(),
                                   "losses_every_50": [round(x, 4) for x in state.losses[::50]]},
                           data_seed=0, steps=state.step, wall_time_s=state.wall_time_s, metrics=metrics)
    print(f"wrote {checkpoints.checkpoint_dir(args.out)}: {state.step} steps, {state.wall_time_s:.0f} s; {metrics}")
    print(f"files: {', '.join(manifest['files'])}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
