"""The writer's held-out benchmark: requests and instructions written by hand for testing only.   [nb 09]

Nine parts (PARTS), each a requests table and an instructions table in data/writer_benchmark/: "dev"
(requests.tsv, instructions.tsv; its failures were looked at while the writer was improved, so it is the
development set), "final" (final_requests.tsv, final_instructions.tsv; written later by another author,
scored once on the first rebuilt writer and then looked at while the writer was improved again),
"final2" (final2_requests.tsv, final2_instructions.tsv; written later still by another author, scored
once on the second version of the writer and then looked at while the writer was improved again),
"final3" (final3_requests.tsv, final3_instructions.tsv; written later by another author, scored once on
the shipped writer of the second round, then looked at while the writer was improved again, so it is no
longer held out either), "final4" (final4_requests.tsv, final4_instructions.tsv; written later by another
author, scored once on the writer of the third round, then looked at while the writer was improved again, so
it is no longer held out either), "final5" (final5_requests.tsv, final5_instructions.tsv; written later by
another author, scored once on the fourth round's writer, then looked at while the writer was improved again, so it
is no longer held out either), "final6" (final6_requests.tsv, final6_instructions.tsv; written later by another
author, scored once on the fifth round's writer, then looked at while the writer was improved again, so it is no
longer held out either), "final7" (final7_requests.tsv, final7_instructions.tsv; written later by another author,
looked at while the writer was improved, so it is no longer held out either) and "final8" (final8_requests.tsv,
final8_instructions.tsv; written later by another author, kept unseen until the next measurement). All hold
phrasings a person wrote as people type them (fillers, new word orders, colour names beyond the four basic words,
synonyms, typos, impossible asks), never produced by a training template and never used for training; README.md
there says who wrote them, how, and the conventions of the expected answers. Each line carries its tags (TAGS) and
its one expected answer: a canonical caption (a request), the target caption (an instruction, the
world's execution of its canonical instruction(s) joined by " ; "), or "refuse:<kind>" (REFUSAL_KINDS).
"""

from __future__ import annotations

import collections
import csv
import functools
from dataclasses import dataclass

from course_lib import environment
from course_lib.validation import CourseInputError, check_choice

BENCHMARK_DIR = environment.DATA_DIR / "writer_benchmark"
REFUSAL_PREFIX = "refuse:"
# dev: looked at while improving the writer; final: scored once on the first rebuilt writer, then looked at while
# the writer was improved again; final2: scored once on the second version of the writer, then looked at while the
# writer was improved again; final3: written later by another author, scored once on the shipped writer of the second
# round, then looked at while the writer was improved again, so it is no longer held out either; final4: written later
# by another author, scored once on the writer of the third round, then looked at while the writer was improved again,
# so it is no longer held out either; final5: written later by another author, scored once on the fourth round's writer,
# then looked at while the writer was improved again, so it is no longer held out either; final6: written later by
# another author, scored once on the fifth round's writer, then looked at while the writer was improved again, so it
# is no longer held out either; final7: written later by another author, looked at while the writer was improved, so
# it is no longer held out either; final8: written later by another author, kept unseen until the next measurement
PARTS = ("dev", "final", "final2", "final3", "final4", "final5", "final6", "final7", "final8")
_FILES = {"dev": ("requests.tsv", "instructions.tsv"), "final": ("final_requests.tsv", "final_instructions.tsv"),
          "final2": ("final2_requests.tsv", "final2_instructions.tsv"),
          "final3": ("final3_requests.tsv", "final3_instructions.tsv"),
          "final4": ("final4_requests.tsv", "final4_instructions.tsv"),
          "final5": ("final5_requests.tsv", "final5_instructions.tsv"),
          "final6": ("final6_requests.tsv", "final6_instructions.tsv"),
          "final7": ("final7_requests.tsv", "final7_instructions.tsv"),
          "final8": ("final8_requests.tsv", "final8_instructions.tsv")}
# What a refusal is about: a colour, shape or count the world lacks, an edit the editor cannot do (move,
# rotate, resize...), an object the scene lacks, a referent two objects fit, contradicting edits, or
# an edit that would change nothing.
REFUSAL_KINDS = ("colour", "shape", "count", "action", "not_in_scene", "ambiguous", "contradiction", "no_change")
REQUEST_TAGS = ("single", "two_objects", "three_objects", "count", "relation", "background", "vague", "no_position",
                "filler", "new_order", "lexicon", "numeral", "punctuation", "casing", "typo", "impossible")
INSTRUCTION_TAGS = ("colour", "shape", "background", "remove", "add", "two_edits", "referent_position",
                    "referent_colour", "referent_shape", "filler", "lexicon", "typo", "impossible")
TAGS = tuple(dict.fromkeys(REQUEST_TAGS + INSTRUCTION_TAGS))
_REQUEST_COLUMNS = ("id", "tags", "request", "expected")
_INSTRUCTION_COLUMNS = ("id", "tags", "source_caption", "instruction", "canonical", "expected")


@dataclass(frozen=True)
class HeldoutRequest:
    """One hand-written request and its one expected answer (a canonical caption or "refuse:<kind>")."""

    id: str
    tags: tuple[str, ...]
    request: str
    expected: str


@dataclass(frozen=True)
class HeldoutInstruction:
    """One hand-written instruction about the scene of source_caption, its canonical instruction(s) and target caption.

    canonical: shapes.instruction's wording, two edits joined by " ; ", "" for a refusal;
    expected: the target caption ("full" phrasing) or "refuse:<kind>".
    """

    id: str
    tags: tuple[str, ...]
    source_caption: str
    instruction: str
    canonical: str
    expected: str


def is_refusal(expected: str) -> bool:
    """Return True when an expected answer is a refusal ("refuse:<kind>")."""
    if not isinstance(expected, str):
        raise CourseInputError(f"expected must be an expected answer (a str), got {type(expected).__name__}.")
    return expected.startswith(REFUSAL_PREFIX)


def refusal_kind(expected: str) -> str | None:
    """Return the kind of a refusal ("colour" for "refuse:colour"), None for a caption."""
    return expected[len(REFUSAL_PREFIX):] if is_refusal(expected) else None


def _rows(name: str, columns: tuple[str, ...]) -> list[dict]:
    path = BENCHMARK_DIR / name
    if not path.is_file():
        raise CourseInputError(f"the writer benchmark file {path} is missing; it ships with the course in data/writer_benchmark/.")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = tuple(next(reader))
        if header != columns:
            raise CourseInputError(f"{path.name} must have the columns {columns}, got {header}.")
        rows = []
        for number, fields in enumerate(reader, 2):
            if len(fields) != len(columns):
                raise CourseInputError(f"{path.name} line {number}: {len(fields)} fields, expected {len(columns)}.")
            row = dict(zip(columns, fields))
            row["tags"] = tuple(row["tags"].split(","))
            rows.append(row)
    return rows


@functools.cache
def heldout_requests(part: str = "dev") -> tuple[HeldoutRequest, ...]:
    """Return the hand-written held-out requests of one part (PARTS: "dev", "final", "final2", "final3", "final4", "final5", "final6", "final7" or "final8"), in file order (read once).   [nb 09]"""
    check_choice(part, PARTS, "part")
    return tuple(HeldoutRequest(**row) for row in _rows(_FILES[part][0], _REQUEST_COLUMNS))


@functools.cache
def heldout_instructions(part: str = "dev") -> tuple[HeldoutInstruction, ...]:
    """Return the hand-written held-out instructions of one part (PARTS: "dev", "final", "final2", "final3", "final4", "final5", "final6", "final7" or "final8"), in file order (read once).   [nb 09]"""
    check_choice(part, PARTS, "part")
    return tuple(HeldoutInstruction(**row) for row in _rows(_FILES[part][1], _INSTRUCTION_COLUMNS))


def tag_counts(items) -> dict[str, int]:
    """Return how many items carry each tag, {tag: count}, in TAGS order (tags no item carries left out)."""
    counts = collections.Counter(t for item in items for t in item.tags)
    return {t: counts[t] for t in TAGS if counts[t]}
