"""Typos: the one-letter errors the writer's data carries, and the distance the guard forgives.   [nb 09]"""

from __future__ import annotations

import random

from course_lib.language.words import as_rng
from course_lib.validation import CourseInputError


def typo(word: str, rng: random.Random | int) -> str:
    """Return `word` with one typing error: two letters swapped, one dropped, one doubled or one replaced.

    Words of fewer than 4 letters come back unchanged. rng: a random.Random or an int seed.
    """
    if not isinstance(word, str):
        raise CourseInputError(f"word must be a string, got {type(word).__name__}.")
    return _typo(word, as_rng(rng))


def _typo(word: str, rng: random.Random) -> str:
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


def add_typo(text: str, rng: random.Random | int) -> str:
    """Return the text with one typo in one of its words of 4+ letters (unchanged if it has none)."""
    if not isinstance(text, str):
        raise CourseInputError(f"text must be a string, got {type(text).__name__}.")
    rng = as_rng(rng)
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not long:
        return text
    i = rng.choice(long)
    words[i] = _typo(words[i], rng)
    return " ".join(words)

