"""The Colab set-up cell, run as Colab runs it: a fresh venv holding only torch, and a stand-in for Colab's marker.

Each notebook's first code cell (the set-up cell) and second (its imports) run in IPython in a fresh venv that holds
the pinned torch and IPython and nothing else, as a Colab runtime holds its own torch; `google.colab` is put in
`sys.modules` first, the marker the cell tests. The cell's `git clone` of the course's GitHub address is answered by
this checkout's committed HEAD (git's `url.<base>.insteadOf`, so the cell's own command runs), and `/content/course`
is replaced by a temporary folder (the only change made to the cell's text). Notebook 00 runs first and installs
requirements-colab.txt; every notebook then runs in a new IPython process on the same venv and clone, as after
Colab's "Restart session", where the cell must change nothing. Needs PyPI (or a wheel mirror) and several minutes:
`make test-colab`; the default `make test` leaves it out (marker `colab`).   [notebook 00, README "On Colab"]
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from course_lib import environment

pytestmark = pytest.mark.colab

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = environment.notebook_paths()
CLONE = "/content/course"
PIP_NOTE = "Note: you may need to restart the kernel to use updated packages."
# A requirement's import name where it differs from its distribution's name.
IMPORT_NAMES = {"scikit-learn": "sklearn", "scikit-image": "skimage", "pillow": "PIL",
                "huggingface-hub": "huggingface_hub", "pyspellchecker": "spellchecker"}
# Runs the given cells in one IPython shell, as a Colab runtime would, and reports where torch and course_lib came from.
DRIVER = r'''
import json, sys, types
sys.modules["google"] = types.ModuleType("google")
sys.modules["google.colab"] = types.ModuleType("google.colab")  # the stand-in for Colab's marker
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
for i, source in enumerate(json.load(open(sys.argv[1]))):
    print(f"=== cell {i}", flush=True)
    result = shell.run_cell(source)
    sys.stdout.flush(); sys.stderr.flush()
    if not result.success:
        print(f"=== cell {i} failed: {result.error_before_exec or result.error_in_exec!r}", flush=True)
        sys.exit(1)
import course_lib, torch
print("=== report " + json.dumps({"course_lib": course_lib.__file__, "torch": torch.__version__}), flush=True)
'''


def code_cells(path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    return ["".join(c["source"]) for c in cells[:2]]


def site_packages(venv):
    return next((venv / "lib").glob("python*/site-packages"))


def torch_files(venv):
    """Return {file: (size, mtime, inode)} of torch's installed files: a reinstall or an upgrade changes them."""
    sp = site_packages(venv)
    found = {}
    for top in [sp / "torch", *sp.glob("torch-*.dist-info")]:
        for f in top.rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts:
                st = f.stat()
                found[str(f.relative_to(sp))] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return found


def freeze(python):
    return subprocess.run([python, "-m", "pip", "freeze", "--all"], capture_output=True, text=True, check=True).stdout


def pins():
    lines = (ROOT / "requirements-colab.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line.strip() and not line.startswith("#"))


class Colab:
    """A fresh venv with torch and IPython only, a folder standing in for /content, and git answering the clone."""

    def __init__(self, base: Path):
        self.venv = base / "venv"
        self.content = base / "content"
        self.content.mkdir()
        self.clone = self.content / "course"
        self.python = str(self.venv / "bin" / "python")
        gitconfig = base / "gitconfig"
        gitconfig.write_text(f'[url "file://{ROOT}"]\n\tinsteadOf = {environment.COURSE_REPO}\n')
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.env.update(GIT_CONFIG_GLOBAL=str(gitconfig), GIT_CONFIG_NOSYSTEM="1", PYTHONNOUSERSITE="1",
                        OMP_NUM_THREADS="1", MPLBACKEND="agg", PATH=f"{self.venv / 'bin'}:{os.environ['PATH']}")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        torch_pin = "torch==" + environment.versions()["torch"].split("+")[0]
        subprocess.run([self.python, "-m", "pip", "install", "-q", *os.environ.get("PIP_FLAGS", "").split(),
                        torch_pin, "ipython"], check=True, env=self.env)
        self.venv_seconds = time.perf_counter() - start
        self.torch_before = torch_files(self.venv)
        self.freeze_before = freeze(self.python)

    def run(self, path):
        """Run `path`'s set-up and imports cells in a new IPython process; return each cell's output and a report."""
        setup, imports = code_cells(path)
        assert setup.count(CLONE) == 4, "the set-up cell names /content/course four times (test, clone, pip, path)"
        cells_file = self.content / f"{path.stem}.cells.json"
        cells_file.write_text(json.dumps([setup.replace(CLONE, str(self.clone)), imports]))
        start = time.perf_counter()
        done = subprocess.run([self.python, "-c", DRIVER, str(cells_file)], capture_output=True, text=True,
                              env=self.env, cwd=self.content, timeout=900)
        seconds = time.perf_counter() - start
        out = done.stdout + done.stderr
        assert done.returncode == 0, f"{path.name}: the cells failed:\n{out[-4000:]}"
        parts = re.split(r"^=== (?:cell \d|report )", done.stdout, flags=re.M)
        return {"setup": parts[1].strip(), "imports": parts[2].strip(), "report": json.loads(parts[3]),
                "stderr": done.stderr, "seconds": seconds}


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """The fresh venv, after notebook 00's set-up cell has installed requirements-colab.txt into it."""
    env = Colab(tmp_path_factory.mktemp("colab"))
    env.first = env.run(NOTEBOOKS[0])
    env.freeze_after = freeze(env.python)
    print(f"\nvenv with torch and IPython: {env.venv_seconds:.0f} s; notebook 00's set-up and imports cells "
          f"(clone + install): {env.first['seconds']:.0f} s")
    return env


def test_the_first_setup_cell_installs_the_colab_requirements_and_leaves_torch_alone(colab):
    assert "torch" in colab.freeze_before and "diffusers" not in colab.freeze_before, "the venv must start as Colab's"
    assert (colab.clone / "requirements-colab.txt").is_file(), "the set-up cell did not clone the course"
    assert torch_files(colab.venv) == colab.torch_before, "pip reinstalled or upgraded torch"
    assert colab.first["report"]["course_lib"].startswith(str(colab.clone)), "course_lib came from elsewhere"
    assert colab.first["report"]["torch"] == environment.versions()["torch"]
    names = list(pins())
    check = (f"import importlib.metadata, json; import {', '.join(IMPORT_NAMES.get(n, n) for n in names)}; "
             f"print(json.dumps({{n: importlib.metadata.version(n) for n in {names!r}}}))")
    done = subprocess.run([colab.python, "-c", check], capture_output=True, text=True, env=colab.env, cwd=colab.content)
    assert done.returncode == 0, f"a requirement of requirements-colab.txt does not import:\n{done.stderr[-3000:]}"
    assert json.loads(done.stdout) == pins(), "a requirement is not at its pinned version"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_setup_cell_run_again_changes_nothing_and_the_imports_cell_runs(colab, path):
    ran = colab.run(path)
    assert ran["setup"] == PIP_NOTE, f"the set-up cell, run again, printed more than pip's note:\n{ran['setup']}"
    assert freeze(colab.python) == colab.freeze_after, "the set-up cell, run again, changed the installed packages"
    assert torch_files(colab.venv) == colab.torch_before, "pip reinstalled or upgraded torch"
    assert ran["report"] == {"course_lib": str(colab.clone / "course_lib" / "__init__.py"),
                             "torch": environment.versions()["torch"]}
    print(f"\n{path.name}: set-up and imports cells {ran['seconds']:.0f} s")
