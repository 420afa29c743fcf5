"""The exercises' known-wrong answers: each exercise cell carries them, and the harness that feeds them through works.

The feeding itself happens under nbval (conftest.py): these tests check the metadata of every committed notebook,
the pieces of course_lib.wrong_answers against hand-made cells, and, once, the whole harness on a small notebook
whose check is too lax, which must fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from course_lib import environment, exercises, wrong_answers
from course_lib.validation import CourseInputError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = environment.notebook_paths(ROOT / "notebooks")

CELL = {"cell_type": "code", "metadata": {}, "source": (
    "def f(x):\n    # BEGIN SOLUTION\n    return 2 * x\n    # END SOLUTION\n\n\n"
    "def g(x):\n    if x:\n        # BEGIN SOLUTION\n        return x - 1\n        # END SOLUTION\n    return 0\n")}


def exercise_cells(path: Path):
    nb = json.loads(path.read_text())
    return [(i, c) for i, c in enumerate(nb["cells"]) if wrong_answers.is_exercise_cell(c)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_exercise_cell_carries_its_wrong_answers(path):
    cells = exercise_cells(path)
    total = 0
    for i, cell in cells:
        where = f"{path.name}, cell {i}"
        entries = wrong_answers.read(cell, where)
        assert len(entries) >= wrong_answers.MIN_PER_CELL, (
            f"{where}: {len(entries)} wrong answers in its metadata, at least {wrong_answers.MIN_PER_CELL} wanted")
        source = "".join(cell["source"])
        variants = [wrong_answers.substitute(source, e["code"], e["block"]) for e in entries]
        for entry, variant in zip(entries, variants):
            compile(variant, where, "exec")  # a wrong answer that is not even Python tests nothing
            assert variant != source and exercises.BEGIN in source
        assert len(set(variants)) == len(variants), f"{where}: two wrong answers are the same code"
        shown = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        assert wrong_answers.passes(shown) >= 1, f"{where}: the committed output shows no ✅ for the solution"
        total += len(entries)
    print(f"{path.stem}: {len(cells)} exercise cells, {total} wrong answers")


def test_the_count_of_wrong_answers_over_the_course():
    cells = [(p, i, c) for p in NOTEBOOKS for i, c in exercise_cells(p)]
    total = sum(len(wrong_answers.read(c)) for _, _, c in cells)
    categories = {e["category"] for _, _, c in cells for e in wrong_answers.read(c)}
    print(f"\n{len(cells)} exercise cells x wrong answers = {total} wrong answers, categories: {sorted(categories)}")
    assert total >= wrong_answers.MIN_PER_CELL * len(cells)
    assert {"constant", "sign flip", "off by one", "visible cell"} <= categories


def test_substitute_replaces_one_block_at_its_indentation():
    source = CELL["source"]
    out = wrong_answers.substitute(source, "y = x\nreturn -y", block=0)
    assert "    y = x\n    return -y\n" in out and "return 2 * x" not in out
    assert "        return x - 1" in out  # the other block keeps its solution
    ns = {}
    exec(out, ns)
    assert ns["f"](3) == -3 and ns["g"](3) == 2
    out = wrong_answers.substitute(source, "return x", block=1)
    exec(out, ns)
    assert ns["f"](3) == 6 and ns["g"](3) == 3 and ns["g"](0) == 0
    with pytest.raises(CourseInputError, match="block 2"):
        wrong_answers.substitute(source, "return 0", block=2)


def test_student_version_is_the_student_copy():
    assert wrong_answers.student_version(CELL["source"]) == exercises.strip_source(CELL["source"])


@pytest.mark.parametrize("metadata, match", [
    ({"wrong_answers": {"why": "constant: 0", "code": "return 0"}}, "must be a list"),
    ({"wrong_answers": [{"why": "constant: 0"}]}, "must be"),
    ({"wrong_answers": [{"why": "typo: 0", "code": "return 0"}]}, "must start with one of"),
    ({"wrong_answers": [{"why": "constant: 0", "code": "return 0", "block": 2}]}, "'block' must be an int from 0 to 1"),
    ({"wrong_answers": [{"why": "constant: 0", "code": "return 0", "block": True}]}, "'block'"),
])
def test_read_refuses_malformed_metadata(metadata, match):
    with pytest.raises(CourseInputError, match=match):
        wrong_answers.read({**CELL, "metadata": metadata}, "cell 3")


def test_read_fills_the_default_block_and_the_category():
    cell = {**CELL, "metadata": {"wrong_answers": [{"why": "sign flip: -2x", "code": "return -2 * x"}]}}
    assert wrong_answers.read(cell) == [{"why": "sign flip: -2x", "category": "sign flip", "code": "return -2 * x",
                                         "block": 0}]


@pytest.mark.parametrize("output, solved, ok", [
    ("❌ Exercise 1.1: off by up to 0.5\n   Hint: look at t", 1, True),
    ("✅ Exercise 1.1: correct\n", 1, False),
    ("❌ part one wrong\n✅ part two: correct\n", 1, False),
    ("❌ part one wrong\n✅ part two: correct\n", 2, True),  # the other block's check still passes
    ("❌ part one wrong\n✅ part two: correct\n✅ part three: correct\n", 2, False),
    ("NameError: name 'x' is not defined\n", 1, False),
    ("", 1, False),
])
def test_judge_wrong(output, solved, ok):
    assert (wrong_answers.judge_wrong(output, solved) == "") is ok


@pytest.mark.parametrize("output, ok", [
    ("❌ Exercise 1.1: not attempted yet\n", True),
    ("❌ Exercise 1.1: not attempted yet\n   Hint: ab.sqrt() * x0\n", False),
    ("✅ Exercise 1.1: correct\n", False),
    ("NotImplementedError: Exercise: write your solution here\n", False),
])
def test_judge_student(output, ok):
    assert (wrong_answers.judge_student(output) == "") is ok


def test_saved_random_states_come_back():
    ns = {"g": torch.Generator().manual_seed(5)}
    exec(wrong_answers.SAVE_STATE, ns)
    a = torch.randn(3, generator=ns["g"]), torch.randn(3)
    ns["g"] = torch.Generator().manual_seed(99)  # a wrong answer rebinding the notebook's generator
    exec(wrong_answers.RESTORE_STATE, ns)
    b = torch.randn(3, generator=ns["g"]), torch.randn(3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not any(name.startswith("__course") for name in ns)


def test_the_harness_fails_a_check_that_a_wrong_answer_passes(tmp_path):
    """End to end: under nbval with the repository's conftest, a lax check and an early hint fail their cell."""
    def notebook(cells):
        return {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3",
                "display_name": "Python 3", "language": "python"}}, "cells": [
                {"cell_type": "code", "id": f"c{i}", "metadata": meta, "execution_count": 1,
                 "outputs": [{"output_type": "stream", "name": "stdout", "text": "✅ E: correct\n"}],
                 "source": src} for i, (src, meta) in enumerate(cells)]}
    check = ("from course_lib import exercises\n\ndef double(x):\n    # BEGIN SOLUTION\n    return 2 * x\n"
             "    # END SOLUTION\n\n\nexercises.check_function('E', double, lambda x: 2 * x, [({case},)]{hint})\n")
    wrong = {"wrong_answers": [{"why": "constant: 0", "code": "return 0"}, {"why": "careless: x", "code": "return x"}]}
    lax = check.format(case="0.0", hint="")
    early = check.replace("\n\n\nexercises", "\n\n\ntry:\n    double(1.0)\nexcept NotImplementedError:\n"
                          "    exercises.check_true('E', False, detail='not attempted yet', hint='return 2 * x')\n"
                          "exercises")
    (tmp_path / "bad.ipynb").write_text(json.dumps(notebook([(lax, wrong), (early.format(case="3.0", hint=""), wrong)])))
    (tmp_path / "good.ipynb").write_text(json.dumps(notebook([(check.format(case="3.0", hint=""), wrong)])))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "--nbval-lax", "-n", "0", "-q",
                          "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert "bad.ipynb::Cell 0" in out and "the check printed no ❌" in out, out[-3000:]  # lax
    assert "bad.ipynb::Cell 1" in out and "a hint prints before any attempt" in out, out[-3000:]  # early hint
    assert "good.ipynb::Cell 0" not in out.split("short test summary")[-1], out[-3000:]
    assert "2 failed, 1 passed" in out, out[-3000:]


def _hints(source: str) -> list[str]:
    """Return the text of every hint= (and explain=) a cell passes to a check (an f-string's fixed parts)."""
    import ast
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg in ("hint", "explain"):
            parts = [node.value] if isinstance(node.value, ast.Constant) else list(ast.walk(node.value))
            out.append("".join(p.value for p in parts if isinstance(p, ast.Constant) and isinstance(p.value, str)))
    return out


def _squeeze(text: str) -> str:
    return "".join(text.split()).replace("return", "")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_hint_quotes_a_line_of_the_solution(path):
    for i, cell in exercise_cells(path):
        source = "".join(cell["source"])
        lines = [line.split("#")[0] for block in exercises._solution_blocks(source) for line in block[1:-1]]
        code = [_squeeze(line) for line in lines if len(_squeeze(line)) >= 10]
        for hint in map(_squeeze, _hints(source)):
            quoted = [line for line in code if line in hint]
            assert not quoted, f"{path.name}, cell {i}: a hint quotes the solution's {quoted[0]!r}"
