"""The writer's data set: examples of every kind, deterministic by seed, and how the writer reads text.   [nb 09]"""

from __future__ import annotations

import random
import re

import torch

from course_lib import shapes
from course_lib.language.instruction_examples import instruction_example
from course_lib.language.request_examples import refusal_request, request_example
from course_lib.language.typos import add_typo
from course_lib.language.words import SCENE, TYPO_RATE, check_split
from course_lib.validation import CourseInputError, check_int, check_number

KINDS = ("request", "instruction", "refusal")


def normalise(text: str) -> str:
    """Return the text as the writer reads it: lower case, single spaces, no surrounding spaces or final full stop."""
    if not isinstance(text, str):
        raise CourseInputError(f"text must be a string, got {type(text).__name__}.")
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(".").strip()


def examples(n: int, seed: int = 0, split: str = "train", *, typo_rate: float = TYPO_RATE,
             kinds=("request", "instruction", "request", "instruction", "refusal")) -> list[tuple[str, str, str]]:
    """Return n (kind, writer input, answer) examples of `split`, kinds in turn, deterministic by seed.   [nb 09]

    split "train": shapes split "train" scenes and training phrasings; "test": shapes split "test"
    scenes (a third of them "heldout", with an unseen colour-shape pair) and held-out phrasings.
    A share typo_rate of the requests and instructions carries one typo. kinds: names of KINDS,
    taken in turn.
    """
    n = check_int(n, "n", minimum=0, hint="the number of examples")
    seed = check_int(seed, "seed", minimum=0)
    check_split(split)
    typo_rate = check_number(typo_rate, "typo_rate", low=0, high=1, hint="the share of inputs with one typo")
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    if not kinds or any(k not in KINDS for k in kinds):
        raise CourseInputError(f"kinds must be a non-empty sequence of {KINDS}, got {kinds!r}.")
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
