"""Known-wrong answers of the exercises: put one into an exercise cell, and judge what the cell's check printed.  [tests]

An exercise's check is only worth its ✅ if a wrong answer cannot earn it. So every exercise code cell (a code cell
holding `# BEGIN SOLUTION`) carries, in its cell metadata, the mistakes a learner would plausibly make:

    "wrong_answers": [{"why": "sign flip: returns +eps / sqrt(1 - alpha_bar)", "code": "return eps / ...", "block": 0}]

`code` replaces the lines between the markers of solution block `block` (default 0), written without the block's
indentation; `why` starts with one of CATEGORIES. Under nbval (the repository's conftest.py), before an exercise
cell runs, each wrong answer is put into the cell and run in the notebook's kernel: its output must show a ❌ and
fewer ✅ than the committed output of the solution (a cell with two checks keeps the other block's ✅). The student version (every block replaced by the placeholder) runs too: it must say "not attempted" and print
no hint, since a hint before a wrong attempt gives the answer away. The kernel's random states are restored
afterwards (SAVE_STATE / RESTORE_STATE), so the real cell prints what it always printed.
"""

from __future__ import annotations

from course_lib.exercises import BEGIN, END, strip_source
from course_lib.validation import CourseInputError

KEY = "wrong_answers"
CATEGORIES = ("constant", "sign flip", "off by one", "seed's version", "visible cell", "neighbour", "careless")
MIN_PER_CELL = 4
PASS_MARK, FAIL_MARK, HINT_MARK, NOT_ATTEMPTED = "✅", "❌", "Hint:", "not attempted"


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def is_exercise_cell(cell: dict) -> bool:
    """Return True for a code cell that holds a solution block."""
    return cell.get("cell_type") == "code" and BEGIN in _source(cell)


def read(cell: dict, where: str = "the cell") -> list[dict]:
    """Return an exercise cell's wrong answers as dicts {why, category, code, block}, refusing a malformed entry."""
    entries = cell.get("metadata", {}).get(KEY, [])
    if not isinstance(entries, list):
        raise CourseInputError(f"{where}: metadata {KEY!r} must be a list of {{\"why\", \"code\"}} objects, "
                               f"got {type(entries).__name__}.")
    blocks = _source(cell).count(BEGIN)
    rows = []
    for k, entry in enumerate(entries):
        label = f"{where}, wrong answer {k}"
        if not isinstance(entry, dict) or not isinstance(entry.get("why"), str) or not isinstance(entry.get("code"), str):
            raise CourseInputError(f"{label}: must be {{\"why\": str, \"code\": str, \"block\": int}}, got {entry!r}.")
        category = entry["why"].split(":", 1)[0].strip()
        if category not in CATEGORIES:
            raise CourseInputError(f"{label}: 'why' must start with one of {', '.join(CATEGORIES)} and a colon, "
                                   f"got {entry['why']!r}.")
        block = entry.get("block", 0)
        if not isinstance(block, int) or isinstance(block, bool) or not 0 <= block < blocks:
            raise CourseInputError(f"{label}: 'block' must be an int from 0 to {blocks - 1} (the cell's solution "
                                   f"blocks), got {block!r}.")
        rows.append({"why": entry["why"], "category": category, "code": entry["code"], "block": block})
    return rows


def substitute(source: str, code: str, block: int = 0) -> str:
    """Return a cell's source with solution block `block` replaced by `code`, indented like its BEGIN marker."""
    strip_source(source)  # refuses unbalanced markers
    out, seen, inside = [], -1, False
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped == BEGIN:
            seen += 1
            if seen == block:
                inside = True
                indent = line[: len(line) - len(line.lstrip())]
                out += [indent + c if c.strip() else c for c in code.rstrip("\n").split("\n")]
                continue
        if inside:
            inside = stripped != END
            continue
        out.append(line)
    if block > seen:
        raise CourseInputError(f"block {block} does not exist: the cell has {seen + 1} solution block(s).")
    return "\n".join(out)


def student_version(source: str) -> str:
    """Return a cell's source as a student copy has it: every solution block replaced by the placeholder."""
    return strip_source(source)


def passes(output: str) -> int:
    """Return how many checks an output shows passed (its ✅ lines)."""
    return output.count(PASS_MARK)


def judge_wrong(output: str, solved: int = 1) -> str:
    """Return "" if a wrong answer was rejected (a ❌, fewer ✅ than the solution's `solved`), else what went wrong.

    A cell may hold several checks (one per solution block): a wrong answer in one block leaves the others' ✅.
    """
    if FAIL_MARK not in output:
        return "the check printed no ❌ (it passed it, crashed, or printed nothing): " + (output.strip()[-300:]
                                                                                        or "no output")
    if passes(output) >= solved:
        return f"the check passed it ({passes(output)} ✅, as many as the solution's {solved})"
    return ""


def judge_student(output: str) -> str:
    """Return "" if the student version said "not attempted" and printed no hint and no ✅, else what went wrong."""
    if HINT_MARK in output:
        return "a hint prints before any attempt: " + output.strip()[-300:]
    if PASS_MARK in output:
        return "the placeholder earned a ✅"
    if NOT_ATTEMPTED not in output:
        return "the student version does not say 'not attempted': " + (output.strip()[-300:] or "no output")
    return ""


# Run in the notebook's kernel around the wrong answers: the global random states and every torch.Generator the
# notebook holds are put back, so the cells after the exercise draw the same numbers as without the harness.
SAVE_STATE = """\
def __course_save():
    import random, torch
    try:
        import numpy
        np_state = numpy.random.get_state()
    except ImportError:
        np_state = None
    gens = {k: (v, v.get_state()) for k, v in globals().items() if isinstance(v, torch.Generator)}
    return torch.get_rng_state(), random.getstate(), np_state, gens
__course_saved = __course_save()
"""
RESTORE_STATE = """\
def __course_restore(saved):
    import random, torch
    torch.set_rng_state(saved[0])
    random.setstate(saved[1])
    if saved[2] is not None:
        import numpy
        numpy.random.set_state(saved[2])
    for k, (gen, state) in saved[3].items():
        gen.set_state(state)
        globals()[k] = gen
__course_restore(__course_saved)
del __course_saved, __course_save, __course_restore
"""
