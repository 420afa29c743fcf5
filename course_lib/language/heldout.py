"""The writer on the hand-written held-out benchmark: exact match, refusals true and false, silent wrong answers.   [nb 09]

Every request and instruction of benchmark_set (written by hand for testing, never by a training
template) goes through the writer's public calls, PromptWriter.caption and .target_caption, as a
learner's would; each comes back as an answer, or as a refusal (WriterError). Then, per line:

    exact          the answer equals the expected caption, or the line is impossible and was refused
    false refusal  a possible line refused
    true refusal   an impossible line refused
    silent wrong   an answer that differs from the expected one, not refused (an impossible line
                   answered counts here too): the failure a user cannot see

score_heldout only needs .caption and .target_caption, so it scores any writer with those calls.
"""

from __future__ import annotations

import random
import re

from course_lib.language.benchmark_set import heldout_instructions, heldout_requests, is_refusal
from course_lib.language.measuring import ATTRIBUTES, attribute_scores
from course_lib.language.refusals import WriterError
from course_lib.language.typos import typo
from course_lib.validation import CourseInputError, check_int

TARGETS = {"requests exact": 0.90, "instructions exact": 0.85, "false refusals": 0.02, "impossible refused": 0.98,
           "silent wrong": 0.03}  # issue 25's targets: the first two and "impossible refused" at least, the rest at most


def _answer(call, *args) -> tuple[str | None, str | None]:
    # (answer, None) or (None, the refusal's kind or "refused")
    try:
        return call(*args), None
    except WriterError as error:
        return None, getattr(error, "kind", None) or "refused"


def _rows(items, answers) -> list[dict]:
    rows = []
    for item, (answer, refused) in zip(items, answers):
        impossible = is_refusal(item.expected)
        rows.append({"id": item.id, "tags": item.tags, "impossible": impossible, "answer": answer, "refused": refused,
                     "expected": item.expected,
                     "exact": (refused is not None) if impossible else (answer == item.expected),
                     "false_refusal": refused is not None and not impossible,
                     "silent_wrong": refused is None and (impossible or answer != item.expected)})
    return rows


def summarise(rows: list[dict]) -> dict[str, float | int]:
    """Return the shares of a list of scored rows: exact, false refusals (of possible), impossible refused, silent wrong."""
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and "exact" in r for r in rows):
        raise CourseInputError("rows must be a non-empty list of score_heldout's rows.")
    possible = [r for r in rows if not r["impossible"]]
    impossible = [r for r in rows if r["impossible"]]
    out = {"n": len(rows), "exact": sum(r["exact"] for r in rows) / len(rows),
           "exact (possible lines)": sum(r["exact"] for r in possible) / max(1, len(possible)),
           "false refusals": sum(r["false_refusal"] for r in possible) / max(1, len(possible)),
           "impossible refused": sum(r["refused"] is not None for r in impossible) / max(1, len(impossible)),
           "silent wrong": sum(r["silent_wrong"] for r in rows) / len(rows)}
    answered = [r for r in possible if r["answer"] is not None]
    for attribute in ATTRIBUTES:
        out[attribute] = sum(attribute_scores(r["answer"], r["expected"])[attribute] for r in answered) / max(1, len(possible))
    return out


def score_heldout(writer, part: str = "dev") -> dict[str, list[dict]]:
    """Return every held-out line of `part` scored: {"requests": rows, "instructions": rows} (module docstring).   [nb 09]

    part: one of benchmark_set.PARTS (the last, PARTS[-1], is the one kept unseen until the shipped writer was measured).

    writer: anything with .caption(request) and .target_caption(source_caption, instruction) that
    raise WriterError to refuse (a PromptWriter).
    """
    if not callable(getattr(writer, "caption", None)) or not callable(getattr(writer, "target_caption", None)):
        raise CourseInputError(f"writer must have .caption and .target_caption (a language.PromptWriter), "
                               f"got {type(writer).__name__}.")
    requests, instructions = heldout_requests(part), heldout_instructions(part)
    return {"requests": _rows(requests, [_answer(writer.caption, r.request) for r in requests]),
            "instructions": _rows(instructions, [_answer(writer.target_caption, i.source_caption, i.instruction)
                                                 for i in instructions])}


def heldout_table(scored: dict[str, list[dict]]) -> dict[str, dict[str, float | int]]:
    """Return summarise() of the requests, the instructions, and the request subsets named by their tags.   [nb 09]"""
    if not isinstance(scored, dict) or set(scored) != {"requests", "instructions"}:
        raise CourseInputError("scored must be score_heldout's result ({'requests': rows, 'instructions': rows}).")
    out = {"requests": summarise(scored["requests"]), "instructions": summarise(scored["instructions"])}
    for tag in ("two_objects", "three_objects", "relation", "lexicon", "filler", "new_order", "typo"):
        rows = [r for r in scored["requests"] if tag in r["tags"]]
        if rows:
            out[f"requests: {tag}"] = summarise(rows)
    for tag in ("lexicon", "two_edits", "filler"):
        rows = [r for r in scored["instructions"] if tag in r["tags"]]
        if rows:
            out[f"instructions: {tag}"] = summarise(rows)
    return out


def typo_requests(edits: int, seed: int = 0, part: str = "dev") -> list[tuple[str, str, str, str]]:
    """Return (request with typos, the word changed, the word as mistyped, expected caption) for held-out requests.   [nb 09]

    In each possible request one word of 5+ letters that names a colour, shape or place (the words
    the writer must not lose) gets `edits` typing errors (typos.typo: a swap, a drop, a double or a
    replaced letter, each at another letter). Requests without such a word are left out.
    """
    from course_lib.language.reader import read, typo_distance

    edits = check_int(edits, "edits", minimum=1, maximum=2, hint="one- or two-character typos")
    seed = check_int(seed, "seed", minimum=0)
    rng = random.Random(f"heldout-typos-{edits}-{seed}-{part}")
    out = []
    for item in heldout_requests(part):
        if is_refusal(item.expected) or "typo" in item.tags:
            continue
        slot_words = sorted({typed for typed, _, role in read(item.request).roles
                             if role in ("colour", "shape", "position") and typed.isalpha() and len(typed) >= 5
                             and re.search(rf"\b{typed}\b", item.request.lower())})  # as typed, not an abbreviation's expansion
        if not slot_words:
            continue
        word = rng.choice(slot_words)
        for _ in range(20):
            changed = word
            for _ in range(edits):
                changed = typo(changed, rng)
            if typo_distance(changed, word) == edits:
                at = re.search(rf"\b{word}\b", item.request.lower()).start()  # the reader's words are lower case
                out.append((item.request[:at] + changed + item.request[at + len(word):], word, changed, item.expected))
                break
    return out


def score_typos(writer, edits: int, seed: int = 0, part: str = "dev") -> dict[str, float | int]:
    """Return exact match and refusals on typo_requests(edits, seed, part).   [nb 09]"""
    cases = typo_requests(edits, seed, part)
    if not cases:
        raise CourseInputError("no held-out request has a word to put a typo in.")
    typed = [_answer(writer.caption, request)[0] for request, *_ in cases]
    return {"n": len(cases), "edits": edits,
            "exact": sum(a == case[-1] for a, case in zip(typed, cases)) / len(cases),
            "refused": sum(a is None for a in typed) / len(cases)}


LEXICON_FRAME = "could you draw a {name} ball in the top right?"  # written for this measurement only


def score_lexicon(writer, split: str = "heldout") -> dict[str, float | int]:
    """Return the writer on every colour name of a lexicon split, one request each (LEXICON_FRAME).   [nb 09]

    A name the lexicon maps to a world colour must come back as "a <colour> circle in the top right";
    a refused name must be refused. split "heldout": names no training example used.
    """
    from course_lib.language.lexicon import colour_lexicon, colour_names

    names = colour_names(split=split)
    entries = colour_lexicon()
    right = {True: 0, False: 0}
    for name in names:
        answer, refused = _answer(writer.caption, LEXICON_FRAME.format(name=name))
        world = entries[name].world
        right[world is not None] += (answer == f"a {world} circle in the top right") if world else (refused is not None)
    mapped = sum(entries[n].world is not None for n in names)
    return {"n": len(names), "mapped": mapped, "refused": len(names) - mapped,
            "mapped right": right[True] / max(1, mapped), "refused right": right[False] / max(1, len(names) - mapped)}


def target_verdicts(table: dict) -> list[tuple[str, float, float, bool]]:
    """Return (target, measured, bound, met) for each of TARGETS on a heldout_table: exact per kind; the refusal and
    silent-wrong shares on requests and instructions together (the worse of the two).   [nb 09]"""
    if not isinstance(table, dict) or "requests" not in table or "instructions" not in table:
        raise CourseInputError("table must be heldout_table's result (with 'requests' and 'instructions').")
    req, ins = table["requests"], table["instructions"]
    measured = {"requests exact": req["exact"], "instructions exact": ins["exact"],
                "false refusals": max(req["false refusals"], ins["false refusals"]),
                "impossible refused": min(req["impossible refused"], ins["impossible refused"]),
                "silent wrong": max(req["silent wrong"], ins["silent wrong"])}
    at_least = {"requests exact", "instructions exact", "impossible refused"}
    return [(name, measured[name], bound, measured[name] >= bound if name in at_least else measured[name] <= bound)
            for name, bound in TARGETS.items()]
