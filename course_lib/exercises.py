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
"not attempted yet" with the hint instead of failing, so a student copy still runs top to bottom.

Write the student copies with:   python -m course_lib.exercises notebooks student
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
PLACEHOLDER = 'raise NotImplementedError("Exercise: write your solution here")'


def _report(label: str, ok: bool, detail: str = "", hint: str = "") -> None:
    if ok:
        print(f"✅ {label}: correct")
    else:
        print(f"❌ {label}: {detail}" + (f"\n   Hint: {hint}" if hint else ""))


def check_close(label: str, got, expected, *, atol: float = 1e-5, rtol: float = 1e-4, hint: str = "") -> None:
    """Print one line: whether `got` equals `expected` within tolerance, with a hint when not."""
    try:
        got_t = torch.as_tensor(got, dtype=torch.float64)
        expected_t = torch.as_tensor(expected, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        _report(label, False, f"could not compare ({exc})", hint)
        return
    if got_t.shape != expected_t.shape:
        _report(label, False, f"shape {tuple(got_t.shape)}, expected {tuple(expected_t.shape)}", hint)
        return
    worst = (got_t - expected_t).abs().max().item() if got_t.numel() else 0.0
    ok = torch.allclose(got_t, expected_t, atol=atol, rtol=rtol)
    _report(label, ok, f"off by up to {worst:.3g}", hint)


def check_true(label: str, condition: bool, *, detail: str = "not yet", hint: str = "") -> None:
    """Print one line: whether a condition the exercise asks for holds."""
    _report(label, bool(condition), detail, hint)


def check_function(label: str, fn: Callable, reference: Callable, cases: Iterable[tuple], *,
                   atol: float = 1e-5, rtol: float = 1e-4, hint: str = "") -> None:
    """Call the learner's `fn` and the `reference` on each tuple of arguments and compare, in one line."""
    for i, args in enumerate(cases):
        try:
            got = fn(*args)
        except NotImplementedError:
            _report(label, False, "not attempted yet", hint)
            return
        except Exception as exc:  # the learner's code failed: say how, not a stack trace
            _report(label, False, f"raised {type(exc).__name__}: {exc}", hint)
            return
        expected = reference(*args)
        got_t, expected_t = torch.as_tensor(got, dtype=torch.float64), torch.as_tensor(expected, dtype=torch.float64)
        if got_t.shape != expected_t.shape or not torch.allclose(got_t, expected_t, atol=atol, rtol=rtol):
            detail = (f"case {i}: shape {tuple(got_t.shape)}, expected {tuple(expected_t.shape)}"
                      if got_t.shape != expected_t.shape else
                      f"case {i}: off by up to {(got_t - expected_t).abs().max().item():.3g}")
            _report(label, False, detail, hint)
            return
    _report(label, True)


def strip_source(source: str) -> str:
    """Replace every BEGIN/END SOLUTION block in one cell's source by a NotImplementedError line."""
    lines, out, inside = source.split("\n"), [], False
    for line in lines:
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"nested '{BEGIN}' markers in:\n{source}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}{PLACEHOLDER}")
        elif stripped == END:
            if not inside:
                raise ValueError(f"'{END}' without '{BEGIN}' in:\n{source}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"'{BEGIN}' is never closed in:\n{source}")
    return "\n".join(out)


def student_copy(notebook: dict) -> dict:
    """Return a copy of a notebook (nbformat JSON) with solutions removed and outputs cleared."""
    nb = json.loads(json.dumps(notebook))
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if BEGIN in source:
            cell["source"] = strip_source(source)
        cell["outputs"], cell["execution_count"] = [], None
    return nb


def count_exercises(notebook: dict) -> int:
    """Return how many solution blocks a notebook holds."""
    text = "".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    return len(re.findall(re.escape(BEGIN), text))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write student copies of the notebooks: solutions out, checks in.")
    parser.add_argument("source", type=Path, help="folder of the course notebooks (notebooks)")
    parser.add_argument("dest", type=Path, help="folder to write the student copies to (e.g. student)")
    args = parser.parse_args(argv)
    notebooks = sorted(args.source.glob("[0-9][0-9]*_*.ipynb"))
    if not notebooks:
        raise SystemExit(f"no notebooks named NN_*.ipynb in {args.source}/")
    args.dest.mkdir(parents=True, exist_ok=True)
    for path in notebooks:
        nb = json.loads(path.read_text())
        (args.dest / path.name).write_text(json.dumps(student_copy(nb), indent=1, ensure_ascii=False) + "\n")
        print(f"{args.dest / path.name}: {count_exercises(nb)} exercises")


if __name__ == "__main__":
    main()
