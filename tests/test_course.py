"""The course as a whole: every notebook follows the conventions, and the README and requirements agree."""

import json
import os
import re
from pathlib import Path

import pytest

from course_lib import environment

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
SETUP_LINES = [
    "import os",
    "import sys",
    'if "google.colab" in sys.modules:',
    '    if not os.path.isdir("/content/course"):  # a re-run (e.g. after "Restart session") keeps the first clone',
    f"        !git clone -q --depth 1 {environment.COURSE_REPO} /content/course",
    "    %pip install -q -r /content/course/requirements-colab.txt",
    '    sys.path.insert(0, "/content/course")',
]


def load(path):
    return json.loads(path.read_text())


def source(cell):
    return "".join(cell["source"])


def test_there_are_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS[:3]] == ["00", "01", "02"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_opening_cell_has_title_badge_goals_and_time(path):
    first = source(load(path)["cells"][0])
    assert first.startswith(f"# {path.name.split('_')[0]} · ")  # "03", or "03b" for a notebook inserted after 03
    badge = f"https://colab.research.google.com/github/{environment.COURSE_REPO.split('github.com/')[1]}/blob/main/notebooks/{path.name}"
    assert badge in first, "Open-in-Colab badge missing or pointing elsewhere"
    for part in ("You will be able to", "**Time:**", "**Runs on:**", "NOTATION.md"):
        assert part in first


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_is_the_colab_setup_cell(path):
    code = [c for c in load(path)["cells"] if c["cell_type"] == "code"]
    lines = [line for line in source(code[0]).splitlines() if line and not line.startswith("#")]
    assert lines == SETUP_LINES, "the setup cell must be the standard one (it never reinstalls torch)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_executed_in_order_small_and_clean(path):
    nb = load(path)
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and source(c).strip()]
    counts = [c["execution_count"] for c in code]
    assert None not in counts and counts == sorted(counts), "re-run the notebook top to bottom"
    assert path.stat().st_size < 2_000_000, "keep figures small (PNG, modest size and dpi)"
    for cell in code:
        for out in cell["outputs"]:
            assert out["output_type"] != "error", f"a stored output is an error: {out.get('ename')}"
            assert "image/svg+xml" not in out.get("data", {}), "use PNG figures (SVG is not deterministic)"
            text = json.dumps(out.get("text", "")) + json.dumps(out.get("data", {}).get("text/plain", ""))
            assert not re.search(r"/(work|tmp|root|home)/", text), "an output shows a path of this machine"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_at_least_three_exercises_with_checks(path):
    from course_lib import exercises

    nb = load(path)
    assert exercises.count_exercises(nb) >= 3
    code = "".join(source(c) for c in nb["cells"] if c["cell_type"] == "code")
    assert code.count("exercises.check") >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_star_imports_or_hard_coded_cuda(path):
    code = "".join(source(c) for c in load(path)["cells"] if c["cell_type"] == "code")
    assert "import *" not in code
    assert ".cuda()" not in code


def test_readme_notebook_table_is_the_course_map():
    readme = (ROOT / "README.md").read_text()
    assert environment.course_map_markdown() in readme, (
        "README's notebook table is stale: paste the output of `python -m course_lib.environment`"
    )


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_requirements_pin_the_cpu_torch_and_colab_never_installs_torch():
    requirements = (ROOT / "requirements.txt").read_text().splitlines()
    assert "torch==2.13.0" in requirements
    colab = (ROOT / "requirements-colab.txt").read_text()
    assert not re.search(r"^torch", colab, re.M)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert not re.search(r'^\s*"torch', pyproject, re.M), "course_lib must not pull a torch build"


@pytest.mark.skipif(os.name != "posix", reason="Unix sockets: Linux and macOS only; Windows keeps TCP")
def test_notebook_kernels_talk_over_unix_sockets():
    # the root conftest.py: two xdist workers starting kernels together cannot be handed the same TCP port
    from nbval import kernel as nbval_kernel

    manager = nbval_kernel.KernelManager(kernel_name="python3")
    assert manager.transport == "ipc" and Path(manager.ip).parent.is_dir()


def test_nbval_waits_for_a_loaded_kernels_last_output():
    # the root conftest.py: nbval's own 5 s for a cell's last output fails live progress bars on a busy machine
    from nbval import plugin as nbval_plugin

    root_conftest = (Path(__file__).parents[1] / "conftest.py").read_text()
    timeout = int(re.search(r"^OUTPUT_TIMEOUT_S = (\d+)$", root_conftest, re.M).group(1))
    assert getattr(nbval_plugin.IPyNbCell, "course_patient", False) and timeout >= 60
