"""Exercise checks, and the command that writes student copies of the notebooks.   [notebook 00]

An exercise is a code cell whose solution sits between two marker lines:

    def my_q_sample(x0, t, alpha_bars, eps):
        # BEGIN SOLUTION
        ab = alpha_bars[t]
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        # END SOLUTION

    exercises.check_function("1.1 q_sample", my_q_sample, schedules.q_sample, cases, hint="...")

The committed notebooks keep the solutions, so CI runs and checks them. The student copies replace
each solution with `raise NotImplementedError(...)`; a check that meets that error prints
"not attempted yet" instead of failing, so a student copy still runs top to bottom. The hint is printed only
once an attempt is wrong: before that it would give the answer away.

Write the student copies with:   python -m course_lib.exercises notebooks student

An exercise is announced by a markdown cell whose metadata holds `"exercise": {"id": ..., "kind": ...}` and
whose text has the heading `**Exercise <id> (<short title>) · <kind label>.**` (the labels are KINDS below).
The instructor kit's tables are generated from that metadata and from each notebook's opening cell:

    python -m course_lib.exercises --kit instructor      # writes instructor/exercises.md and notebooks.md
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from course_lib import environment, notebook_links
from course_lib.validation import CourseInputError, check_number

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
PLACEHOLDER = 'raise NotImplementedError("Exercise: write your solution here")'
# Cell metadata key of an exercise cell's known-wrong answers (for the tests; student copies drop it).
WRONG_ANSWERS = "wrong_answers"


def _report(label: str, ok: bool, detail: str = "", hint: str = "") -> None:
    if ok:
        print(f"✅ {label}: correct")
    else:
        print(f"❌ {label}: {detail}" + (f"\n   Hint: {hint}" if hint else ""))


NONE_HINT = "your function returned None: did you forget `return`?"


def _check_label(label) -> None:
    if not isinstance(label, str) or not label.strip():
        raise CourseInputError(f"label must be a non-empty str naming the exercise, got {label!r}.")


def _check_tolerances(atol, rtol) -> tuple[float, float]:
    return check_number(atol, "atol", low=0), check_number(rtol, "rtol", low=0)


def _compare(got, expected, atol: float, rtol: float) -> str:
    """Return "" if the learner's answer `got` equals `expected` within tolerance, else what is wrong, in words."""
    if got is None:
        return NONE_HINT
    try:
        got_t = torch.as_tensor(got).detach().cpu().to(torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return f"your answer is a {type(got).__name__}, which cannot be read as numbers: return a tensor or a number"
    expected_t = torch.as_tensor(expected).detach().cpu().to(torch.float64)
    if got_t.shape != expected_t.shape:
        return f"shape {tuple(got_t.shape)}, expected {tuple(expected_t.shape)}"
    if bool(torch.isnan(got_t).any()):
        return (f"your answer holds {int(torch.isnan(got_t).sum())} NaN value(s): look for a division by zero, "
                f"a log or square root of a negative number, or a value that was never filled")
    if torch.allclose(got_t, expected_t, atol=atol, rtol=rtol):
        return ""
    return f"off by up to {(got_t - expected_t).abs().max().item():.3g}"


def check_close(label: str, got, expected, *, atol: float = 1e-5, rtol: float = 1e-4, hint: str = "") -> None:
    """Print one line: whether `got` equals `expected` within tolerance, with a hint when not."""
    _check_label(label)
    atol, rtol = _check_tolerances(atol, rtol)
    wrong = _compare(got, expected, atol, rtol)
    _report(label, not wrong, wrong, hint)


def check_true(label: str, condition: bool, *, detail: str = "not yet", hint: str = "") -> None:
    """Print one line: whether a condition the exercise asks for holds (a tensor: every element)."""
    _check_label(label)
    if condition is None:
        _report(label, False, NONE_HINT, hint)
        return
    if isinstance(condition, torch.Tensor):
        condition = condition.numel() > 0 and bool(condition.all())
    _report(label, bool(condition), detail, hint)


def _learner_answer(label: str, fn: Callable, args: tuple, hint: str,
                    not_attempted: str = "not attempted yet") -> tuple[bool, object]:
    """Call the learner's code; on a placeholder or a failure print the one line and return (False, None)."""
    try:
        return True, fn(*args)
    except NotImplementedError:
        _report(label, False, not_attempted)
    except Exception as exc:  # the learner's code failed: say how, not a stack trace
        _report(label, False, f"raised {type(exc).__name__}: {exc}", hint)
    return False, None


def check_function(label: str, fn: Callable, reference: Callable, cases: Iterable[tuple], *,
                   atol: float = 1e-5, rtol: float = 1e-4, hint: str = "") -> None:
    """Call the learner's `fn` and the `reference` on each tuple of arguments and compare, in one line.

    A case list that is empty, or a case that is not a tuple of arguments, is the exercise author's mistake
    and raises CourseInputError; everything the learner's function does (raise, return None, a wrong shape,
    NaN) is one failed line with a hint.
    """
    _check_label(label)
    for value, name in ((fn, "fn"), (reference, "reference")):
        if not callable(value):
            raise CourseInputError(f"{name} must be a function, got {type(value).__name__}.")
    atol, rtol = _check_tolerances(atol, rtol)
    cases = list(cases)
    if not cases:
        raise CourseInputError(f"{label}: cases is empty, so nothing would be checked; give at least one tuple of "
                               f"arguments, e.g. [(x0, 5)].")
    if not all(isinstance(args, tuple) for args in cases):
        raise CourseInputError(f"{label}: each case must be a tuple of arguments, e.g. (x0, 5) or (x,) for one; got "
                               f"{type(next(a for a in cases if not isinstance(a, tuple))).__name__}.")
    for i, args in enumerate(cases):
        answered, got = _learner_answer(label, fn, args, hint)
        if not answered:
            return
        wrong = _compare(got, reference(*args), atol, rtol)
        if wrong:
            _report(label, False, f"case {i}: {wrong}", hint)
            return
    _report(label, True)


def check_prediction(label: str, predict: Callable[[], object], outcome, *, choices: Iterable | None = None,
                     within: float | None = None, explain: str = "", hint: str = "") -> None:
    """Print one line for a "predict, then run" exercise: the learner's `predict()` against the measured `outcome`.

    A word prediction (one of `choices`, compared without case or surrounding spaces) must equal `outcome`; a
    number must be within `within` of it (absolute). Print the outcome only as the word or a rounded figure the
    caller passes, so that the line is the same on every machine. `explain` is printed after a right prediction
    too: the point of the exercise is the reason, not the guess.
    """
    _check_label(label)
    if not callable(predict):
        raise CourseInputError(f"predict must be the learner's function predict() -> answer, got {type(predict).__name__}.")
    if within is not None:
        within = check_number(within, "within", low=0, hint="how far a number prediction may be from the outcome")
    if isinstance(outcome, str) and choices is not None:
        choices = [str(c).strip().lower() for c in choices]
        if outcome.strip().lower() not in choices:
            raise CourseInputError(f"{label}: the outcome {outcome!r} is not one of the choices {choices}: the learner "
                                   f"could never predict it.")
    answered, guess = _learner_answer(label, predict, (), hint,
                                      "not attempted yet: write your prediction before you run the experiment")
    if not answered:
        return
    if guess is None:
        _report(label, False, "your prediction returned None: did you forget `return`?", hint)
        return
    if isinstance(outcome, str):
        allowed = choices
        said = str(guess).strip().lower()
        if allowed is not None and said not in allowed:
            _report(label, False, f"{guess!r} is not one of {', '.join(map(repr, allowed))}", hint)
            return
        ok = said == outcome.strip().lower()
    else:
        try:
            ok = abs(float(guess) - float(outcome)) <= (within if within is not None else 0.0)
        except (TypeError, ValueError):
            _report(label, False, f"expected a number, got {guess!r}", hint)
            return
    if ok:
        print(f"✅ {label}: you predicted it" + (f". {explain}" if explain else ""))
    else:
        _report(label, False, f"you predicted {guess!r}; the experiment says {outcome!r}",
                hint if hint else explain)


def strip_source(source: str) -> str:
    """Replace every BEGIN/END SOLUTION block in one cell's source by a NotImplementedError line."""
    if not isinstance(source, str):
        raise CourseInputError(f"source must be one cell's source as a str, got {type(source).__name__}.")
    lines, out, inside = source.split("\n"), [], False
    for line in lines:
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise CourseInputError(f"nested '{BEGIN}' markers in:\n{source}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}{PLACEHOLDER}")
        elif stripped == END:
            if not inside:
                raise CourseInputError(f"'{END}' without '{BEGIN}' in:\n{source}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise CourseInputError(f"'{BEGIN}' is never closed in:\n{source}")
    return "\n".join(out)


def student_copy(notebook: dict, relink: Callable[[str], str] | None = None) -> dict:
    """Return a copy of a notebook (nbformat JSON) with solutions removed, outputs cleared, wrong answers dropped.

    Each cell's "wrong_answers" metadata (the known-wrong answers the tests feed to its check) is removed; every
    other key is kept. `relink`, if given, rewrites each relative link target of the markdown cells (see
    `notebook_links.mover`, for a copy that lies in another folder than the notebook); markdown is otherwise kept.
    """
    environment.check_notebook(notebook)
    if relink is not None and not callable(relink):
        raise CourseInputError(f"relink must be a function target -> new target (or None), got {type(relink).__name__}.")
    nb = json.loads(json.dumps(notebook))
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop(WRONG_ANSWERS, None)
        if cell["cell_type"] == "markdown" and relink is not None:
            cell["source"] = notebook_links.rewrite(cell_source(cell), relink)
        if cell["cell_type"] != "code":
            continue
        source = cell_source(cell)
        if BEGIN in source:
            cell["source"] = strip_source(source)
        cell["outputs"], cell["execution_count"] = [], None
    return nb


def count_exercises(notebook: dict) -> int:
    """Return how many solution blocks a notebook holds."""
    environment.check_notebook(notebook)
    text = "".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    return len(re.findall(re.escape(BEGIN), text))


def cell_source(cell: dict) -> str:
    """Return one cell's source as one str (nbformat stores it as a str or a list of lines)."""
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def solution_blocks(source: str) -> list[list[str]]:
    """Return each BEGIN/END SOLUTION block of one cell's source as its lines, the two markers included."""
    strip_source(source)  # raises on unbalanced markers
    blocks, current = [], None
    for line in source.split("\n"):
        if line.strip() == BEGIN:
            current = [line]
        elif current is not None:
            current.append(line)
            if line.strip() == END:
                blocks.append(current)
                current = None
    return blocks


def restore_solutions(student: dict, original: dict) -> dict:
    """Return a student copy with the original's solutions put back: each placeholder line becomes its block.

    Cells are matched by cell id (by position for cells without one). Everything else in the student copy (its
    other edits, its cleared outputs) is kept, so a teacher can fill in the solutions of a learner's copy, and
    the tests can check that student copy + solutions == the committed notebook, code cell by code cell.
    """
    environment.check_notebook(student, "student")
    environment.check_notebook(original, "original")
    nb = json.loads(json.dumps(student))
    originals = original["cells"]
    by_id = {c["id"]: c for c in originals if c.get("id")}
    for i, cell in enumerate(nb["cells"]):
        source = cell_source(cell) if cell["cell_type"] == "code" else ""
        lines = source.split("\n")
        holes = [j for j, line in enumerate(lines) if line.strip() == PLACEHOLDER]
        if not holes:
            continue
        twin = by_id.get(cell.get("id")) or (originals[i] if i < len(originals) else None)
        where = f"cell {i}" + (f" (id {cell['id']})" if cell.get("id") else "")
        if twin is None or twin["cell_type"] != "code":
            raise CourseInputError(f"{where} of the student copy has no code cell to match in the original notebook: "
                                   "restore from the notebook the student copy was made from.")
        blocks = solution_blocks(cell_source(twin))
        if len(blocks) != len(holes):
            raise CourseInputError(f"{where} of the student copy has {len(holes)} placeholder line(s) but the original "
                                   f"cell has {len(blocks)} solution block(s): was the copy made from this notebook?")
        out, k = [], 0
        for j, line in enumerate(lines):
            if j in holes:
                out += blocks[k]
                k += 1
            else:
                out.append(line)
        cell["source"] = "\n".join(out)
    return nb


# The kinds of exercise (cell metadata "exercise": {"id": ..., "kind": ...}) and the label each heading shows.
KINDS = {
    "derive": "derive and check",
    "predict": "predict, then run",
    "implement": "implement a missing piece",
    "bug": "find the bug",
    "practice": "practice",
}
HEADING = re.compile(r"^\*\*Exercise (?P<id>\S+) \((?P<title>.+)\) · (?P<label>[^*]+?)\.\*\*", re.M)


def list_exercises(notebook: dict, name: str = "the notebook") -> list[dict]:
    """Return the exercises a notebook marks in its cell metadata: id, title, kind, needs_thought, cell index.

    `needs_thought` is True for every kind but "practice" (re-writing a cell the notebook showed).
    """
    environment.check_notebook(notebook)
    rows = []
    for i, cell in enumerate(notebook["cells"]):
        meta = cell.get("metadata", {}).get("exercise")
        if meta is None:
            continue
        where = f"{name}, cell {i}"
        if cell["cell_type"] != "markdown":
            raise CourseInputError(f"{where}: the exercise metadata belongs on the markdown cell that introduces it.")
        if not isinstance(meta, dict) or not {"id", "kind"} <= set(meta):
            raise CourseInputError(f'{where}: exercise metadata must be {{"id": ..., "kind": ...}}, got {meta!r}.')
        kind = meta["kind"]
        if kind not in KINDS:
            raise CourseInputError(f"{where}: exercise kind {kind!r} is not one of {', '.join(map(repr, KINDS))}.")
        heading = HEADING.search(cell_source(cell))
        if heading is None or heading["id"] != str(meta["id"]) or heading["label"].strip() != KINDS[kind]:
            raise CourseInputError(f"{where}: the text must start with the heading "
                                   f"**Exercise {meta['id']} (<short title>) · {KINDS[kind]}.** (metadata {meta!r}).")
        rows.append({"id": str(meta["id"]), "title": heading["title"].strip(), "kind": kind,
                     "needs_thought": kind != "practice", "cell": i})
    return rows


# Reading rates behind the kit's reading-time estimate: technical prose with equations, and code read closely.
PROSE_WORDS_PER_MIN, CODE_LINES_PER_MIN = 150, 25
KIT_NOTE = "<!-- generated by `python -m course_lib.exercises --kit instructor`; tests/test_exercises.py checks it is current -->"


def _relink(text: str) -> str:
    """Point a notebook's relative markdown links (NOTATION.md, 01_forward_process.ipynb) at notebooks/ from instructor/."""
    return re.sub(r"\]\((?!https?://|#|\.\./)([^)]+)\)", r"](../notebooks/\1)", text)


def _cell_text(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def exercises_markdown(folder: Path | None = None) -> str:
    """Return instructor/exercises.md: each notebook's marked exercises, with the ones that need thought."""
    folder = Path(folder) if folder is not None else environment.ROOT / "notebooks"
    lines = [KIT_NOTE, "", "# Exercises, notebook by notebook", "",
             "Read from each exercise's cell metadata (`\"exercise\": {\"id\": ..., \"kind\": ...}`). Kinds: "
             + "; ".join(f"`{k}` ({label})" for k, label in KINDS.items())
             + ". Every kind but `practice` needs thought: it cannot be solved by copying a visible cell. "
             "The solutions are in the committed notebooks between `# BEGIN SOLUTION` and `# END SOLUTION`; "
             "`make student` writes copies without them. Cells are counted from 0.", "",
             "| notebook | exercises marked | need thought | solution blocks |", "|---|---|---|---|"]
    details = []
    for path in environment.notebook_paths(folder):
        nb = json.loads(path.read_text())
        rows = list_exercises(nb, path.name)
        thought = sum(r["needs_thought"] for r in rows)
        lines.append(f"| {path.stem} | {len(rows)} | {thought} | {count_exercises(nb)} |")
        details += ["", f"## {path.stem}", ""]
        if not rows:
            details.append(f"No exercise is marked in the cell metadata yet ({count_exercises(nb)} solution blocks).")
            continue
        details += ["| exercise | title | kind | needs thought | cell |", "|---|---|---|---|---|"]
        details += [f"| {r['id']} | {_cell_text(r['title'])} | {KINDS[r['kind']]} | {'yes' if r['needs_thought'] else 'no'} "
                    f"| {r['cell']} |" for r in rows]
    return "\n".join(lines + details) + "\n"


def reading_minutes(notebook: dict) -> tuple[int, int, int]:
    """Return (prose words, code lines, minutes to read both) at PROSE_WORDS_PER_MIN and CODE_LINES_PER_MIN."""
    environment.check_notebook(notebook)
    words = sum(len(cell_source(c).split()) for c in notebook["cells"] if c["cell_type"] == "markdown")
    code = sum(len([l for l in cell_source(c).splitlines() if l.strip()]) for c in notebook["cells"] if c["cell_type"] == "code")
    return words, code, round(words / PROSE_WORDS_PER_MIN + code / CODE_LINES_PER_MIN)


def run_times(path: Path) -> tuple[list[str], dict[str, str]]:
    """Read a saved `instructor/time_notebooks.py` report: its header lines, and per notebook "9 s CPU (30 s wall, ...)"."""
    if not Path(path).is_file():
        raise CourseInputError(f"no run-time report at {path}: write one with python instructor/time_notebooks.py.")
    header, times = [], {}
    for line in Path(path).read_text().splitlines():
        row = re.match(r"^(\S+\.ipynb)\s+cpu\s+([\d.]+) s\s+wall\s+([\d.]+) s\s+(.*?)\s*$", line)
        if row:
            times[row[1]] = f"{float(row[2]):.0f} s CPU ({float(row[3]):.0f} s wall; {row[4]})"
        elif line.strip():
            header.append(line.strip())
    return header, times


def notebooks_markdown(folder: Path | None = None, times_file: Path | None = None) -> str:
    """Return instructor/notebooks.md: per notebook its goals, prerequisites, reading time and measured run time."""
    folder = Path(folder) if folder is not None else environment.ROOT / "notebooks"
    header, times = run_times(times_file) if times_file is not None and Path(times_file).exists() else ([], {})
    lines = [KIT_NOTE, "", "# The notebooks: goals, prerequisites, times", "",
             "Goals, time and prerequisites are read from each notebook's opening cell. **Reading time** is an estimate "
             f"from the word count: prose at {PROSE_WORDS_PER_MIN} words a minute and code at {CODE_LINES_PER_MIN} "
             "non-empty lines a minute; it leaves out thinking, the exercises and trying things. **Run time** is "
             "measured by `instructor/time_notebooks.py`: the CPU seconds of the notebook under nbval (pytest and its "
             "kernel, kernel start included) with one OpenMP thread, about what the run takes on an idle core; the wall "
             "time on the shared measuring machine is in brackets. From [run_times.txt](run_times.txt)"
             + (f": {'; '.join(header)}" if header else "") + ". Where learners get stuck is in [README.md](README.md).",
             "", "| notebook | reading (estimate) | run (measured) | the notebook's own estimate | exercises |",
             "|---|---|---|---|---|"]
    details = []
    for path in environment.notebook_paths(folder):
        nb = json.loads(path.read_text())
        head, (words, code, minutes) = environment.opening(nb), reading_minutes(nb)
        marked = list_exercises(nb, path.name)
        lines.append(f"| [{path.stem}](#{path.stem}) | {minutes} min | {times.get(path.name, 'not measured')} "
                     f"| {head['time']} | {count_exercises(nb)} blocks, {sum(r['needs_thought'] for r in marked)} need thought |")
        details += ["", f"## {path.stem}", "", f"**{head['title']}** ([notebook](../notebooks/{path.name}))", "",
                    "You will be able to:", ""] + [f"- {_relink(g)}" for g in head["goals"]] + [
                    "", f"- **Needs:** {_relink(head['needs'])}",
                    f"- **Runs on:** {head['runs_on']}",
                    f"- **Reading time (estimate from word count):** about {minutes} min ({words:,} words of prose, "
                    f"{code:,} lines of code)",
                    f"- **Run time (measured under nbval):** {times.get(path.name, 'not measured')}",
                    f"- **Solutions:** {count_exercises(nb)} blocks in the committed notebook; `make student` writes "
                    f"`student/{path.name}` without them"]
    return "\n".join(lines + details) + "\n"


def kit_files(folder: Path | None = None, kit: Path | None = None) -> dict[str, str]:
    """Return the instructor kit's generated files, name -> text (the times come from kit/run_times.txt)."""
    kit = Path(kit) if kit is not None else environment.ROOT / "instructor"
    return {"exercises.md": exercises_markdown(folder), "notebooks.md": notebooks_markdown(folder, kit / "run_times.txt")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write student copies of the notebooks (solutions out, checks in), "
                                                 "or the instructor kit's generated tables.")
    parser.add_argument("source", type=Path, nargs="?", help="folder of the course notebooks (notebooks)")
    parser.add_argument("dest", type=Path, nargs="?", help="folder to write the student copies to (e.g. student)")
    parser.add_argument("--kit", type=Path, help="write the kit's exercises.md and notebooks.md into this folder")
    args = parser.parse_args(argv)
    if args.kit is not None:
        args.kit.mkdir(parents=True, exist_ok=True)
        for name, text in kit_files(args.source, args.kit).items():
            (args.kit / name).write_text(text)
            print(f"{args.kit / name}: written")
        return
    if args.source is None or args.dest is None:
        parser.error("give the notebooks' folder and the student copies' folder (or --kit FOLDER)")
    try:
        notebooks = environment.notebook_paths(args.source)
    except CourseInputError as exc:
        raise SystemExit(str(exc)) from None
    write_student_copies(notebooks, args.dest)


def write_student_copies(notebooks: list[Path], dest: Path) -> list[Path]:
    """Write a student copy of each notebook into `dest`, with the course's markdown pages they link to.

    The notebooks' folder's markdown pages (the notation table) are copied along; every other relative link is
    pointed at its file from `dest`, so that each link of a student copy resolves. Return the files written.
    """
    notebooks = [Path(p) for p in notebooks]
    if not notebooks:
        raise CourseInputError("notebooks is empty: give the notebooks to copy, e.g. environment.notebook_paths().")
    source, dest = notebooks[0].parent, Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    pages = sorted(source.glob("*.md"))
    relink = notebook_links.mover(source, dest, [p.name for p in notebooks + pages])
    written = []
    for page in pages:
        (dest / page.name).write_text(notebook_links.rewrite(page.read_text(), relink))
        written.append(dest / page.name)
        print(f"{dest / page.name}: copied along (the notebooks link to it)")
    for path in notebooks:
        nb = json.loads(path.read_text())
        (dest / path.name).write_text(json.dumps(student_copy(nb, relink), indent=1, ensure_ascii=False) + "\n")
        written.append(dest / path.name)
        print(f"{dest / path.name}: {count_exercises(nb)} exercises")
    return written


if __name__ == "__main__":
    main()
