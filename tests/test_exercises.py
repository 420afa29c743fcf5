"""The exercise checks print one line, and student copies drop the solutions but keep the checks."""

import json
import re
from pathlib import Path

import pytest
import torch

from course_lib import exercises, notebook_links
from course_lib.validation import CourseInputError

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]*_*.ipynb"))  # 03b too


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


def test_student_copy_drops_the_wrong_answers_and_keeps_the_other_metadata():
    wrong = [{"why": "constant: returns 0", "code": "return 0", "block": 0}]
    original = {"cells": [
        {"cell_type": "markdown", "id": "m", "metadata": {"exercise": {"id": "1.1", "kind": "implement"}},
         "source": "**Exercise 1.1 (x) · implement a missing piece.** See [the table](NOTATION.md)."},
        {"cell_type": "code", "id": "c", "execution_count": 3, "outputs": [{"output_type": "stream", "text": "✅"}],
         "metadata": {"wrong_answers": wrong, "tags": ["keep"], "editable": True},
         "source": "def f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\ncheck(f)"}]}
    frozen = json.dumps(original)
    copy = exercises.student_copy(original)
    assert json.dumps(original) == frozen, "the notebook given is not changed"
    assert copy["cells"][0] == original["cells"][0]
    assert copy["cells"][1]["metadata"] == {"tags": ["keep"], "editable": True}
    assert copy["cells"][1]["id"] == "c" and exercises.PLACEHOLDER in copy["cells"][1]["source"]
    relinked = exercises.student_copy(original, relink=lambda target: "../notebooks/" + target)
    assert relinked["cells"][0]["source"].endswith("[the table](../notebooks/NOTATION.md).")
    with pytest.raises(CourseInputError, match="relink"):
        exercises.student_copy(original, relink="../notebooks")


@pytest.mark.parametrize("where", ["student", "elsewhere/two/deep"])
def test_every_link_in_every_student_copy_resolves(tmp_path, where):
    """`make student` writes student/ beside notebooks/; a copy written anywhere else must work as well."""
    dest = tmp_path / where
    written = exercises.write_student_copies(NOTEBOOKS, dest)
    assert {p.name for p in written} >= {p.name for p in NOTEBOOKS} | {"NOTATION.md"}
    linked = 0
    for path in NOTEBOOKS:
        copy = json.loads((dest / path.name).read_text())
        assert notebook_links.unresolved(copy, dest) == [], f"student copy of {path.name}: links that name no file"
        linked += sum(len(notebook_links.relative_links(t)) for t in notebook_links.markdown_texts(copy))
        assert not any("wrong_answers" in c.get("metadata", {}) for c in copy["cells"])
    page = (dest / "NOTATION.md").read_text()
    assert [t for t in notebook_links.relative_links(page) if not (dest / notebook_links.split_target(t)[0]).exists()] == []
    assert linked >= len(NOTEBOOKS), "every notebook links the notation table at least"


def test_links_are_found_rewritten_for_another_folder_and_checked(tmp_path):
    course = tmp_path / "course"
    (course / "notebooks").mkdir(parents=True)
    (course / "README.md").write_text("# readme")
    (course / "notebooks" / "NOTATION.md").write_text("# notation")
    text = ("[notation](NOTATION.md#guidance) and [readme](../README.md) and ![fig](missing.png) and "
            "[web](https://example.org/x.md) and [here](#top) and <a href=\"../README.md\">r</a> and $[0, 1](x)$")
    assert notebook_links.relative_links(text) == ["NOTATION.md#guidance", "../README.md", "missing.png", "x",
                                                   "../README.md"]
    relink = notebook_links.mover(course / "notebooks", tmp_path / "out" / "student", copied=[])
    moved = notebook_links.rewrite(text, relink)
    assert moved == ("[notation](../../course/notebooks/NOTATION.md#guidance) and [readme](../../course/README.md) "
                     "and ![fig](missing.png) and [web](https://example.org/x.md) and [here](#top) and "
                     "<a href=\"../../course/README.md\">r</a> and $[0, 1](x)$")
    kept = notebook_links.rewrite(text, notebook_links.mover(course / "notebooks", tmp_path / "out", ["NOTATION.md"]))
    assert kept.startswith("[notation](NOTATION.md#guidance) and [readme](../course/README.md)")
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": moved}]}
    (tmp_path / "out" / "student").mkdir(parents=True)
    assert notebook_links.unresolved(nb, tmp_path / "out" / "student") == ["missing.png", "x"]
    with pytest.raises(CourseInputError, match="folder"):
        notebook_links.unresolved(nb, tmp_path / "nowhere")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_link_in_a_committed_notebook_resolves(path):
    assert notebook_links.unresolved(load(path), path.parent) == []


# --- check_prediction (the "predict, then run" check) ----------------------------------------------------------

def test_check_prediction_words_numbers_and_the_student_copy(capsys):
    def unattempted():
        raise NotImplementedError

    exercises.check_prediction("p", lambda: " Falls ", "falls", choices=["rises", "falls"], explain="because")
    assert capsys.readouterr().out == "✅ p: you predicted it. because\n"
    exercises.check_prediction("p", lambda: "rises", "falls", choices=["rises", "falls"], hint="h")
    out = capsys.readouterr().out
    assert out.startswith("❌ p: you predicted 'rises'; the experiment says 'falls'") and "Hint: h" in out
    exercises.check_prediction("p", lambda: "maybe", "falls", choices=["rises", "falls"])
    assert "is not one of 'rises', 'falls'" in capsys.readouterr().out
    exercises.check_prediction("p", unattempted, "falls", choices=["rises", "falls"])
    assert "not attempted yet" in capsys.readouterr().out
    exercises.check_prediction("n", lambda: 3.2, 3.0, within=0.5)
    assert capsys.readouterr().out.startswith("✅ n")
    exercises.check_prediction("n", lambda: "lots", 3.0, within=0.5)
    assert "expected a number" in capsys.readouterr().out


# --- student copies: solutions out, every check in, and the solutions can be put back --------------------------

def load(path):
    return json.loads(path.read_text())


def code_sources(nb):
    return [exercises.cell_source(c) for c in nb["cells"] if c["cell_type"] == "code"]


CHECK = r"exercises\.check_\w+\("


def outside_solutions(source):
    """The lines of a cell that are not inside a solution block (what the student copy must keep)."""
    kept, inside = [], False
    for line in source.split("\n"):
        if line.strip() == exercises.BEGIN:
            inside = True
        elif line.strip() == exercises.END:
            inside = False
        elif not inside:
            kept.append(line)
    return kept


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_student_copy_drops_every_solution_and_keeps_everything_else(path):
    original = load(path)
    copy = exercises.student_copy(original)
    assert [c["cell_type"] for c in copy["cells"]] == [c["cell_type"] for c in original["cells"]]
    placeholders, kept_checks = 0, []
    for before, after in zip(original["cells"], copy["cells"]):
        if before["cell_type"] != "code":
            assert after == before, "markdown cells are copied unchanged"
            continue
        src, out = exercises.cell_source(before), exercises.cell_source(after)
        assert exercises.BEGIN not in out and exercises.END not in out
        assert after["outputs"] == [] and after["execution_count"] is None
        assert after["metadata"] == {k: v for k, v in before["metadata"].items() if k != "wrong_answers"}
        # every line outside a solution survives, in order, and only placeholders are added
        assert [line for line in out.split("\n") if line.strip() != exercises.PLACEHOLDER] == outside_solutions(src)
        placeholders += sum(line.strip() == exercises.PLACEHOLDER for line in out.split("\n"))
        kept_checks += re.findall(CHECK, out)
        assert re.findall(CHECK, out) == re.findall(CHECK, "\n".join(outside_solutions(src))), "a check call was lost"
    assert placeholders == exercises.count_exercises(original)
    assert kept_checks, f"{path.name}: the student copy has no exercises.check_* call left"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_student_copy_with_the_solutions_put_back_is_the_committed_code(path):
    original = load(path)
    restored = exercises.restore_solutions(exercises.student_copy(original), original)
    assert code_sources(restored) == code_sources(original)
    assert [c["cell_type"] for c in restored["cells"]] == [c["cell_type"] for c in original["cells"]]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_solution_sits_inside_a_function_so_the_student_copy_runs_on(path):
    """A placeholder at the top level of a cell raises there and stops a student copy; inside a function the
    check meets the NotImplementedError and prints "not attempted yet"."""
    for i, cell in enumerate(load(path)["cells"]):
        if cell["cell_type"] == "code":
            for line in exercises.cell_source(cell).split("\n"):
                assert not line.startswith(exercises.BEGIN), (
                    f"{path.name} cell {i}: a solution block at the top level of the cell; put it in a function "
                    "that the check calls (see notebook 00)")


def test_restore_solutions_refuses_a_copy_of_another_notebook():
    original = {"cells": [{"cell_type": "code", "id": "a", "metadata": {}, "outputs": [], "execution_count": 1,
                           "source": "def f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\ncheck(f)"}]}
    copy = exercises.student_copy(original)
    assert exercises.cell_source(exercises.restore_solutions(copy, original)["cells"][0]) == original["cells"][0]["source"]
    other = json.loads(json.dumps(original))
    other["cells"][0]["source"] = "def f():\n    return 2\ncheck(f)"
    with pytest.raises(CourseInputError, match="placeholder"):
        exercises.restore_solutions(copy, other)


def execute(nb):
    import nbclient
    import nbformat

    nb = nbformat.reads(json.dumps(nb), as_version=4)  # joins list sources, as Jupyter reads a file
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=False,
                                     resources={"metadata": {"path": str(NOTEBOOKS[0].parent)}})
    client.execute()
    return [line for c in nb["cells"] if c["cell_type"] == "code" for out in c["outputs"]
            if out.get("output_type") == "stream" for line in "".join(out["text"]).splitlines()]


def test_welcome_runs_as_a_student_copy_and_with_its_solutions_put_back():
    original = load(NOTEBOOKS[0])
    assert NOTEBOOKS[0].name == "00_welcome.ipynb"
    committed = [line for c in original["cells"] if c["cell_type"] == "code" for out in c["outputs"]
                 if out.get("output_type") == "stream" for line in "".join(out["text"]).splitlines()
                 if line.startswith(("✅", "❌"))]
    student = exercises.student_copy(original)
    lines = execute(json.loads(json.dumps(student)))  # raises CellExecutionError if a cell fails
    verdicts = [line for line in lines if line.startswith(("✅", "❌"))]
    assert len(verdicts) == len(committed) and all("not attempted yet" in line for line in verdicts), verdicts
    restored = execute(exercises.restore_solutions(student, original))
    assert [line for line in restored if line.startswith(("✅", "❌"))] == committed
    assert all(line.startswith("✅") for line in committed)


# --- the instructor kit -----------------------------------------------------------------------------------------

KIT = NOTEBOOKS[0].parent.parent / "instructor"


def test_instructor_kit_tables_are_current():
    for name, text in exercises.kit_files(NOTEBOOKS[0].parent, KIT).items():
        assert (KIT / name).read_text() == text, (
            f"instructor/{name} is stale: run `python -m course_lib.exercises --kit instructor`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_has_two_exercises_that_need_thought(path):
    rows = exercises.list_exercises(load(path), path.name)
    thought = [r["id"] for r in rows if r["needs_thought"]]
    assert len(thought) >= 2, (f"{path.name}: {len(thought)} exercise(s) of a kind other than 'practice' "
                               f"({', '.join(thought) or 'none'}); the course asks for at least two")


def test_list_exercises_reads_the_metadata_and_rejects_a_wrong_heading():
    def nb(text, meta):
        return {"cells": [{"cell_type": "markdown", "metadata": {"exercise": meta}, "source": text}]}

    rows = exercises.list_exercises(nb("## Exercises\n\n**Exercise 6.2 (the tilted law (6.5)) · derive and check.** On paper",
                                       {"id": "6.2", "kind": "derive"}))
    assert rows == [{"id": "6.2", "title": "the tilted law (6.5)", "kind": "derive", "needs_thought": True, "cell": 0}]
    assert not exercises.list_exercises(nb("**Exercise A (q) · practice.**", {"id": "A", "kind": "practice"}))[0][
        "needs_thought"]
    with pytest.raises(CourseInputError, match="kind 'guess'"):
        exercises.list_exercises(nb("**Exercise A (q) · guess.**", {"id": "A", "kind": "guess"}))
    with pytest.raises(CourseInputError, match="must start with the heading"):
        exercises.list_exercises(nb("**Exercise A (q) · practice.**", {"id": "A", "kind": "bug"}))


def test_readme_links_the_kit_and_the_kit_covers_every_notebook():
    readme = (KIT.parent / "README.md").read_text()
    assert "## Teaching the course" in readme and "instructor/README.md" in readme
    assert readme.index("## Teaching the course") < readme.index("## How the package and the notebooks fit together")
    kit = (KIT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert f"../notebooks/{path.name}" in kit, f"instructor/README.md says nothing about {path.name}"
