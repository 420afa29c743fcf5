"""The writer's guard: a word it never read in training, and no typo of one, is refused before the model guesses.   [nb 09]"""

from __future__ import annotations

import functools
import re

from course_lib import shapes
from course_lib.language.words import ALONE_FRAMES, BACKGROUND_FRAMES, BACKGROUND_WORDS, COLOUR_WORDS, COUNT_FRAMES, \
    COUNT_WORDS, DEFAULT_CELL, DEFAULT_SHAPE, DETERMINERS, INSTRUCTION_FRAMES, INSTRUCTION_JOINERS, INSTRUCTION_PREFIXES, \
    JOINERS, OBJECT_FRAMES, POSITION_WORDS, PREFIXES, REFERENT_FRAMES, RELATION_FRAMES, SCENE, SHAPE_WORDS, UNSUPPORTED, \
    VAGUE_OBJECT_FRAMES
from course_lib.validation import CourseInputError


@functools.cache
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


def unknown_word(text: str) -> str | None:
    """Return the first word of `text` the writer never saw in training and that is no typo of one, else None.   [nb 09]

    The writer's guard: a tiny model cannot know what a word it never read means ("violet"), so
    rather than let it guess a caption, the writer refuses and names the word.
    """
    if not isinstance(text, str):
        raise CourseInputError(f"text must be a string, got {type(text).__name__}.")
    known = known_words()
    for word in re.findall(r"[a-z]+", text.lower()):
        if word not in known and not any(_one_edit_apart(word, k) for k in known if abs(len(k) - len(word)) <= 1):
            return word
    return None


def describes(request: str, caption: str) -> str:
    """Return "" if `request` asks for the scene of `caption` in words the world has, else what it lacks or asks beyond it.   [nb 09]

    The request must name each object's colour (a word of COLOUR_WORDS), its shape (SHAPE_WORDS; an
    object of DEFAULT_SHAPE may stay vague) and its position (POSITION_WORDS; a lone object in
    DEFAULT_CELL may leave it out), and the background where the caption names one; it must hold no
    unsupported colour or shape (UNSUPPORTED, training and held-out lists) and no count above
    shapes.MAX_OBJECTS. So a refusal of a request that describes its caption is a false refusal.
    caption: a caption the world draws (shapes.parse_caption raises CourseInputError otherwise).
    """
    if not isinstance(request, str) or not isinstance(caption, str):
        raise CourseInputError("describes(request, caption) takes two strings.")
    scene = shapes.parse_caption(caption)
    text = " " + " ".join(re.findall(r"[a-z]+", request.lower())) + " "
    words = set(text.split())
    lacking = sorted(w for kind in UNSUPPORTED.values() for ws in kind for w in ws if w in words)
    if lacking:
        return f"it asks for {lacking[0]!r}, which the shapes world does not have"
    too_many = [w for n, w in COUNT_WORDS.items() if n > shapes.MAX_OBJECTS and w in words]
    if too_many:
        return f"it asks for {too_many[0]} objects; a scene holds at most {shapes.MAX_OBJECTS}"
    objects = scene["objects"]
    for o in objects:
        name = f"the {o['colour']} {o['shape']}"
        if not words & set(COLOUR_WORDS[o["colour"]]):
            return f"it never names the colour of {name} ({o['colour']})"
        if o["shape"] != DEFAULT_SHAPE and not words & {w for pair in SHAPE_WORDS[o["shape"]] for w in pair}:
            return f"it never names the shape of {name} ({o['shape']})"
        lone_default = len(objects) == 1 and (o["row"], o["col"]) == DEFAULT_CELL
        if not lone_default and not any(f" {p} " in text for p in POSITION_WORDS[(o["row"], o["col"])]):
            return f"it never says where {name} is ({POSITION_WORDS[(o['row'], o['col'])][0]})"
    if scene["background"] is not None and not words & set(BACKGROUND_WORDS[scene["background"]]):
        return f"it never names the {scene['background']} background"
    return ""
