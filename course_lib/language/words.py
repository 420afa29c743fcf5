"""Words and frames: the word lists and phrase frames the writer's data is made of, each (training, held-out).   [nb 09]

Every list holds training entries and held-out entries (HELD_OUT): split "train" draws only the
former, split "test" only the latter. The writer's own small languages (the special tokens, the
canonical instruction joiner and the refusals) are written down here too, with the door checks
every public function of the package shares (check_split, check_text, as_rng).
"""

from __future__ import annotations

import random

import numpy as np

from course_lib.validation import CourseInputError

SEP, SCENE, END, PAD = "<|sep|>", "<|scene|>", "<|endoftext|>", "<|pad|>"
SPECIAL = (PAD, END, SEP, SCENE)
DEFAULT_SHAPE = "square"
DEFAULT_CELL = (1, 1)

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
OBJECT_FRAMES = (["{d} {c} {s} {p}", "{p}, {d} {c} {s}", "{d} {s} in {c} {p}", "{d} {c} {s} placed {p}", "{p}: {d} {c} {s}",
                  "{c} {s} {p}", "{p} there is {d} {c} {s}", "{d} {s} that is {c} {p}", "{p} - {c} {s}",
                  "{d} {c} {s} sitting {p}", "{p} i want {d} {c} {s}"],
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
    "colour": (["make {r} {c}", "colour {r} {c}", "paint {r} {c}", "change {r} to {c}", "{r} should be {c}",
                "can you make {r} {c}", "recolour {r} {c}", "{r}: make it {c}", "turn {r} {c}"],
               ["please make {r} {c}", "i want {r} to be {c}", "change the colour of {r} to {c}"]),
    "shape": (["turn {r} into a {s}", "make {r} a {s}", "change {r} into a {s}", "replace {r} with a {s}",
               "swap {r} for a {s}", "{r}: make it a {s}", "can you turn {r} into a {s}"],
              ["{r} should be a {s}", "i want {r} to be a {s}", "please turn {r} into a {s}"]),
    "background": (["make the background {b}", "change the background to {b}", "paint the background {b}",
                    "use a {b} background"],
                   ["i want a {b} background", "the background should be {b}", "change the backdrop to {b}"]),
    "remove": (["remove {r}", "delete {r}", "take away {r}", "get rid of {r}", "erase {r}", "i don't want {r}"],
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
WRITER_SPLITS = ("train", "test")


def entries(pair, split: str):
    """Return the entries of a (training, held-out) pair that `split` draws from: pair[0] for "train", pair[HELD_OUT] for "test"."""
    return pair[HELD_OUT] if split == "test" else pair[0]


def check_split(split: str) -> str:
    """Return split if it is "train" or "test" (the writer's two phrasing splits), else raise."""
    if split not in WRITER_SPLITS:
        raise CourseInputError(f"split must be 'train' or 'test', got {split!r}.")
    return split


def check_text(value, name: str) -> str:
    """Return value if it is a non-empty string, else raise naming it."""
    if not isinstance(value, str):
        raise CourseInputError(f"{name} must be a string, got {type(value).__name__}.")
    if not value.strip():
        raise CourseInputError(f"{name} is empty; write what you want, e.g. 'make the circle blue'.")
    return value


def as_rng(rng, name: str = "rng") -> random.Random:
    """Return a random.Random for `rng`: a random.Random passes, an int seed becomes random.Random(seed); else raise."""
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_)):
        return random.Random(int(rng))
    raise CourseInputError(f"{name} must be a random.Random or an int seed, got {type(rng).__name__}. "
                           f"Pass e.g. random.Random(0), or simply 0.")
