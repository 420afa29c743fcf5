"""The exercise checks print one line, and student copies drop the solutions but keep the checks."""

import json
from pathlib import Path

import pytest
import torch

from course_lib import exercises

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_check_close_prints_one_line_each_way(capsys):
    exercises.check_close("ok", torch.ones(3), torch.ones(3))
    assert capsys.readouterr().out == "✅ ok: correct\n"
    exercises.check_close("bad", torch.ones(3), torch.zeros(3), hint="think")
    out = capsys.readouterr().out
    assert out.startswith("❌ bad: off by up to 1") and "Hint: think" in out


def test_check_close_reports_shape_mismatch(capsys):
    exercises.check_close("shape", torch.ones(2), torch.ones(3))
    assert "shape (2,), expected (3,)" in capsys.readouterr().out


def test_check_function_handles_unattempted_and_broken_code(capsys):
    def unattempted(x):
        raise NotImplementedError

    def broken(x):
        return x.nonexistent

    exercises.check_function("ex", unattempted, lambda x: x, [(torch.ones(1),)], hint="h")
    assert "not attempted yet" in capsys.readouterr().out
    exercises.check_function("ex", broken, lambda x: x, [(torch.ones(1),)])
    assert "raised AttributeError" in capsys.readouterr().out
    exercises.check_function("ex", lambda x: 2 * x, lambda x: x + x, [(torch.ones(2),), (torch.zeros(3),)])
    assert capsys.readouterr().out == "✅ ex: correct\n"


def test_strip_source_keeps_indentation_and_the_rest():
    source = "def f(x):\n    # BEGIN SOLUTION\n    y = x + 1\n    return y\n    # END SOLUTION\n\ncheck(f)"
    stripped = exercises.strip_source(source)
    assert stripped == f"def f(x):\n    {exercises.PLACEHOLDER}\n\ncheck(f)"


@pytest.mark.parametrize("bad", ["# BEGIN SOLUTION\nx", "x\n# END SOLUTION", "# BEGIN SOLUTION\n# BEGIN SOLUTION"])
def test_strip_source_rejects_unbalanced_markers(bad):
    with pytest.raises(ValueError):
        exercises.strip_source(bad)


def test_student_copies_written_for_every_notebook(tmp_path):
    exercises.main([str(NOTEBOOKS[0].parent), str(tmp_path)])
    for path in NOTEBOOKS:
        copy = json.loads((tmp_path / path.name).read_text())
        sources = "".join("".join(c["source"]) for c in copy["cells"] if c["cell_type"] == "code")
        assert exercises.BEGIN not in sources and exercises.END not in sources
        assert "exercises.check" in sources, f"{path.name}: the checks must stay in the student copy"
        assert all(not c.get("outputs") for c in copy["cells"] if c["cell_type"] == "code")
