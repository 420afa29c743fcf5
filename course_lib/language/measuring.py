"""Measuring the writer: exact match and per-attribute scores on held-out phrasings, and end to end through the judge.   [nb 09]"""

from __future__ import annotations

import random
import re
import warnings

import torch

from course_lib import shapes
from course_lib.language.dataset import examples, normalise
from course_lib.language.instruction_examples import edit_prompt, phrase_edit
from course_lib.language.refusals import RELATION, WriterError, resolve_edit, resolve_request, resolved
from course_lib.language.request_examples import request_example
from course_lib.language.words import INSTRUCTION_PREFIXES, REFUSALS, entries
from course_lib.language.writer import PromptWriter
from course_lib.validation import CourseInputError, check_int, check_number

ATTRIBUTES = ("count", "colour", "shape", "position", "background")
EVALUATED_KINDS = ("request", "refusal", "instruction")


def _check_writer(writer) -> PromptWriter:
    if not isinstance(writer, PromptWriter):
        raise CourseInputError(f"writer must be a language.PromptWriter (language.load_writer()), got {type(writer).__name__}.")
    return writer


def _check_strings(values, name: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise CourseInputError(f"{name} must be a list of strings.")
    return list(values)


def _check_cases(cases) -> list[shapes.EditResult]:
    if isinstance(cases, (str, shapes.EditResult)) or not isinstance(cases, (list, tuple)) or \
            not all(isinstance(c, shapes.EditResult) for c in cases):
        raise CourseInputError("cases must be a list of shapes.EditResult (shapes.edit_cases or shapesedit.cases).")
    return list(cases)


def _objects_of(caption: str) -> tuple[list[tuple], str | None] | None:
    try:
        d = shapes.parse_caption(caption)
    except CourseInputError:
        return None
    return sorted((o["colour"], o["shape"], o["row"], o["col"]) for o in d["objects"]), d["background"]


def attribute_scores(answer: str, expected: str) -> dict[str, bool]:
    """Return per-attribute verdicts of an answer against the expected caption: count, colour, shape, position, background, exact."""
    if not isinstance(answer, str) or not isinstance(expected, str):
        raise CourseInputError("attribute_scores(answer, expected) takes two strings (captions or refusals).")
    want, got = _objects_of(expected), _objects_of(answer)
    if want is None or got is None:
        bad = {k: False for k in ATTRIBUTES}
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
    answers, expected = _check_strings(answers, "answers"), _check_strings(expected, "expected")
    if len(answers) != len(expected):
        raise CourseInputError(f"got {len(answers)} answers for {len(expected)} expected answers.")
    if not answers:
        raise CourseInputError("there are no answers to score; give at least one.")
    rows = [attribute_scores(a, e) for a, e in zip(answers, expected)]
    return {k: sum(r[k] for r in rows) / len(rows) for k in ("exact", *ATTRIBUTES)}


def evaluate(writer: PromptWriter, n: int = 600, seed: int = 0, *, guard: bool = True) -> dict[str, float]:
    """Return the writer's exact-match accuracy on n held-out examples ('test' split), per kind.   [nb 09]

    Exact: the answer comes to the same caption, target caption or refusal as the right answer
    (resolved()). n >= 5, so that every kind is measured.
    """
    _check_writer(writer)
    n = check_int(n, "n", minimum=5, hint="examples of 5 kinds in turn, so that every kind is measured")
    cases = examples(n, seed, "test", typo_rate=0.2)
    answers = writer.answer([p for _, p, _ in cases], guard=guard)
    out = {}
    for kind in EVALUATED_KINDS:
        rows = [(resolved(k, p, a), resolved(k, p, e)) for (k, p, e), a in zip(cases, answers) if k == kind]
        out[f"exact_{kind}"] = round(sum(a == e for a, e in rows) / len(rows), 4)
    return out


def benchmark_instructions(cases: list[shapes.EditResult], seed: int = 0) -> list[str]:
    """Return one free instruction per ShapesEdit case, in held-out phrasings ('test' frames), deterministic by seed.   [nb 09]"""
    cases = _check_cases(cases)
    seed = check_int(seed, "seed", minimum=0)
    rng = random.Random(f"shapesedit-{seed}")
    return [rng.choice(entries(INSTRUCTION_PREFIXES, "test")) + phrase_edit(c.source, c.edit, rng, "test") for c in cases]


def _target_or_failure(case: shapes.EditResult, instruction: str, answer: str) -> tuple[str | None, str]:
    # (the target caption, "") or (None, the kind of failure: a refusal's kind, or what is wrong with the answer)
    if answer.startswith(REFUSALS):
        return None, "refused: " + next(r for r in REFUSALS if answer.startswith(r)).rstrip(": ")
    try:
        target = resolve_edit(answer, case.source_caption, instruction)
    except WriterError as error:  # the world refuses it: an object it lacks, a name two objects fit, ...
        kind = getattr(error, "kind", "invalid")
        return None, "not an instruction the world can apply" if kind == "invalid" else f"refused by the world: {kind}"
    except CourseInputError:
        return None, "not an instruction the world can apply"
    try:
        shapes.caption_edit(case.source_caption, target)  # one edit, as ShapesEdit's cases
    except CourseInputError:
        return None, "not one edit"
    return target, ""


def _writer_answers(writer: PromptWriter, cases, instructions) -> list[str]:
    _check_writer(writer)
    cases, instructions = _check_cases(cases), _check_strings(instructions, "instructions")
    if len(cases) != len(instructions):
        raise CourseInputError(f"got {len(instructions)} instructions for {len(cases)} cases; give one per case.")
    return writer.answer([edit_prompt(c.source_caption, normalise(i)) for c, i in zip(cases, instructions)])


def writer_targets(writer: PromptWriter, cases: list[shapes.EditResult], instructions: list[str]) -> list[str | None]:
    """Return the writer's target caption per case, or None where it refused or wrote no caption of one edit."""
    answers = _writer_answers(writer, cases, instructions)
    return [_target_or_failure(c, i, a)[0] for c, i, a in zip(cases, instructions, answers)]


def target_failures(writer: PromptWriter, cases: list[shapes.EditResult], instructions: list[str]) -> dict[str, int]:
    """Return how the writer's target captions go wrong, counted: each refusal kind, invalid answers, wrong targets.   [nb 09]

    Keys: "refused: unsupported", ... (the reader's and the model's REFUSALS), "refused by the world:
    <kind>" (not_in_scene, ambiguous, contradiction, no_change, ...: the referent or the edit the
    world refuses), "not an instruction the world can apply", "not one edit" (the cases
    writer_targets maps to None), and "a wrong edit" (a valid target caption that is not the case's).
    Only kinds that occur are present.
    """
    answers = _writer_answers(writer, cases, instructions)
    out: dict[str, int] = {}
    for case, instruction, answer in zip(cases, instructions, answers):
        target, failure = _target_or_failure(case, instruction, answer)
        if target is not None and target != case.target_caption:
            failure = "a wrong edit"
        if failure:
            out[failure] = out.get(failure, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def request_set(n: int, seed: int = 0) -> list[tuple[str, str, shapes.Scene]]:
    """Return n (held-out request, canonical caption, scene) of 'test' scenes with cells the judge can check (no relations)."""
    n = check_int(n, "n", minimum=0, hint="the number of requests")
    seed = check_int(seed, "seed", minimum=0)
    rng = random.Random(f"requests-{seed}")
    out = []
    g = torch.Generator().manual_seed(seed)
    while len(out) < n:
        for scene in shapes.sample_scenes(64, split="test", generator=g):
            request, answer, target = request_example(scene, rng, "test")
            if len(out) < n and " above a " not in answer and " to the left of a " not in answer:
                out.append((normalise(request), answer, target))
    return out


REFERENCE_ROWS = ("true caption, request's order", "true caption, reading order")


def as_read(prompt: str, tokenizer) -> str:
    """Return the prompt as a text encoder reads it: cut to the tokenizer's length, as StableDiffusionPipeline cuts it.   [nb 09]

    Words and punctuation past tokenizer.model_max_length (start and end tokens included) are dropped;
    a prompt that fits comes back unchanged.
    """
    if not isinstance(prompt, str):
        raise CourseInputError(f"prompt must be a str, got {type(prompt).__name__}.")
    ends = [m.end() for m in re.finditer(r"\w+|[^\w\s]", prompt)]  # words and punctuation, as the tokenizer splits them
    keep = len(ends)
    while keep and len(tokenizer(prompt[:ends[keep - 1]]).input_ids) > tokenizer.model_max_length:
        keep -= 1
    return prompt if keep == len(ends) else prompt[:ends[keep - 1]] if keep else ""


E2E_ROWS = ("raw request", "prompt writer", *REFERENCE_ROWS)


def _handwritten_requests(part: str, n: int) -> tuple[list[str], list[str]]:
    # the hand-written held-out requests of `part` the judge can check: a caption with cells (no relation, no refusal)
    from course_lib.language.benchmark_set import heldout_requests, is_refusal

    items = [r for r in heldout_requests(part) if not is_refusal(r.expected) and not RELATION.match(r.expected)][:n]
    return [r.request for r in items], [r.expected for r in items]


def end_to_end(writer: PromptWriter, parts, n: int = 200, *, guidance_scale: float = 4.0, num_steps: int = 25,
               seed: int = 0, rows=E2E_ROWS, part: str | None = None) -> dict[str, dict[str, float]]:
    """Return the shapes judge's adherence of images drawn from the raw requests, the writer's captions and the true captions.   [nb 09]

    The same starting noise for every row (seeded by seed); a request the writer refused is drawn
    from its raw text (the image model has nothing else). The true captions are references, twice
    (REFERENCE_ROWS): with the objects in the order the request names them, as request_example
    writes them, and in reading order, as resolve_request puts the writer's answers and as the image
    model was trained. The judge checks every object's colour, shape and cell, the count, and the
    background where the request names one. "exact_caption": the writer's caption equals the true
    one in reading order. A prompt longer than the tokenizer reads is cut to the words it reads (the
    pipeline's truncation; only raw requests are that long). rows: the names of E2E_ROWS to draw (all
    by default; "exact_caption" is always measured, under "prompt writer"). part: None for the
    generated held-out requests (request_set), or one of benchmark_set.PARTS for the first n hand-written held-out
    requests of that part that the judge can check (no relation, no refusal); their expected caption
    is in reading order, so the request's-order reference row is not drawn for them.
    """
    # text2image loads diffusers: imported when images are drawn, not with the language package
    from course_lib import text, text2image

    _check_writer(writer)
    n = check_int(n, "n", minimum=1, hint="the number of requests")
    guidance_scale = check_number(guidance_scale, "guidance_scale", low=0)
    num_steps = check_int(num_steps, "num_steps", minimum=1)
    if isinstance(rows, str) or not rows or any(r not in E2E_ROWS for r in rows):
        raise CourseInputError(f"rows must be a non-empty list of names from {E2E_ROWS}, got {rows!r}.")
    if part is None:
        requests, captions, _ = (list(x) for x in zip(*request_set(n, seed)))
        reading = [resolve_request(c, r) for c, r in zip(captions, requests)]
    else:
        requests, reading = _handwritten_requests(part, n)
        captions, n = reading, len(requests)
        rows = [r for r in rows if r != REFERENCE_ROWS[0]]
    written = []
    for request in requests:
        try:
            written.append(writer.caption(request))
        except WriterError:
            written.append(request)
    out = {}
    for name, prompts in zip(E2E_ROWS, (requests, written, captions, reading)):
        if name not in rows:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", text.UnknownWordWarning)
            images = text2image.generate(parts, [as_read(p, parts.tokenizer) for p in prompts],
                                         guidance_scale=guidance_scale, num_steps=num_steps,
                                         generator=torch.Generator().manual_seed(seed))
        out[name] = text2image.adherence(images, captions)  # the background is judged only where the request names it
    out.setdefault("prompt writer", {})["exact_caption"] = sum(w == c for w, c in zip(written, reading)) / n
    return out
