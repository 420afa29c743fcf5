"""Where the course runs: the device to use, the versions installed, and whether this is Colab.   [notebook 00]"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch

from course_lib.validation import CourseInputError, check_int

# The course's home; the README, the notebooks' Colab badges and their setup cells use this address.
COURSE_REPO = "https://github.com/diffusion-course/diffusion-course"
# The course's folders, found from this file so that notebooks work from any working directory.
ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"
PACKAGES = ("torch", "diffusers", "transformers", "numpy", "matplotlib", "ipywidgets", "scikit-learn",
            "scikit-image", "pyspellchecker")


def on_colab() -> bool:
    """Return True inside Google Colab."""
    return "google.colab" in sys.modules


def default_device() -> torch.device:
    """Return the best device available: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def versions() -> dict[str, str]:
    """Return the Python version and the installed version of each package the course uses."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def describe() -> str:
    """Return a few lines naming the device, its threads or GPU, and the versions installed."""
    device = default_device()
    lines = [f"device: {device}"]
    if device.type == "cuda":
        lines.append(f"gpu: {torch.cuda.get_device_name(0)}")
    lines.append(f"cpu threads torch uses: {torch.get_num_threads()}")
    lines += [f"{name}: {version}" for name, version in versions().items()]
    return "\n".join(lines)


def opening(notebook: dict) -> dict:
    """Return what a notebook's opening cell promises: its title, goals, time, what it runs on and what it needs.

    The one reader of the opening cell: the course map (README, notebook 00, the website) and the instructor kit
    both call it, so none of them can disagree with the notebooks.
    """
    check_notebook(notebook)
    if not notebook["cells"]:
        raise CourseInputError("the notebook has no cells: its opening cell (title, goals, time) is missing.")
    source = notebook["cells"][0]["source"]
    text = "".join(source) if isinstance(source, list) else source
    title = re.search(r"^#\s*(.+)$", text, re.M)
    goals = re.search(r"able to:?\*?\*?\s*\n+((?:\s*[-*] .+\n?)+)", text)
    minutes = re.search(r"\*\*Time:\*\*\s*(?:about\s*)?([^·\n*]+?)\s*(?:·|\n|$)", text)
    runs_on = re.search(r"\*\*Runs on:\*\*\s*([^·\n]+)", text)
    needs = re.search(r"\*\*Needs:\*\*\s*(.+)", text)
    return {
        "title": title.group(1).strip() if title else "",
        "goals": [g.strip()[1:].strip() for g in goals.group(1).strip().splitlines()] if goals else [],
        "time": minutes.group(1).strip() if minutes else "?",
        "runs_on": runs_on.group(1).strip() if runs_on else "?",
        "needs": needs.group(1).strip() if needs else "?",
    }


def check_notebook(notebook, name: str = "notebook") -> dict:
    """Return `notebook` if it is a notebook's JSON (a dict with a list of cells), else raise saying how to read one."""
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise CourseInputError(f"{name} must be a notebook's JSON, a dict with a list of 'cells': read one with "
                               f"json.loads(Path('notebooks/00_welcome.ipynb').read_text()); got {type(notebook).__name__}.")
    return notebook


def notebook_paths(folder: Path | None = None) -> list[Path]:
    """Return the course's notebooks NN_*.ipynb in `folder` (default: notebooks/) in reading order; raise if none."""
    folder = Path(folder) if folder is not None else ROOT / "notebooks"
    found = sorted(folder.glob("[0-9][0-9]*_*.ipynb"))
    if not found:
        raise CourseInputError(f"no notebooks named NN_*.ipynb in {folder}/")
    return found


def course_map(folder: Path | None = None) -> list[dict[str, str]]:
    """Return, for each notebook NN_*.ipynb in reading order, its file, title, first goal, time and device.

    Read from each notebook's opening cell (`opening`), so the map can never disagree with the notebooks.
    """
    folder = Path(folder) if folder is not None else ROOT / "notebooks"
    if not folder.is_dir():
        raise CourseInputError(f"{folder} is not a folder: give the folder that holds the notebooks (default notebooks/).")
    rows = []
    for path in sorted(folder.glob("[0-9][0-9]*_*.ipynb")):
        head = opening(json.loads(path.read_text()))
        rows.append({
            "file": path.name,
            "title": head["title"] or path.stem,
            "goal": head["goals"][0] if head["goals"] else "",
            "time": head["time"],
            "runs_on": head["runs_on"],
        })
    return rows


def course_map_markdown(folder: Path | None = None, link_prefix: str = "notebooks/") -> str:
    """Return the course map as a markdown table (the README's notebook table is this, verbatim)."""
    lines = ["| notebook | you learn to | time | runs on |", "|---|---|---|---|"]
    for row in course_map(folder):
        badge = (f"[![Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                 f"(https://colab.research.google.com/github/{COURSE_REPO.split('github.com/')[1]}/blob/main/notebooks/{row['file']})")
        lines.append(f"| [{row['title']}]({link_prefix}{row['file']}) {badge} | {row['goal']} | {row['time']} | {row['runs_on']} |")
    return "\n".join(lines)


def median_seconds(fn, repeats: int = 3, *, clock=time.perf_counter) -> float:
    """Return the median seconds of `repeats` calls of fn() on `clock` (benchmarks/, nb 06b).

    clock: time.perf_counter (wall clock, the default) or time.process_time (the CPU time of this process,
    which other work on a shared machine does not inflate; with one thread it is the wall clock of an idle
    machine, and it does not count time spent asleep or waiting).
    """
    if not callable(fn):
        raise CourseInputError(f"fn must be a function to time, got {type(fn).__name__}.")
    if not callable(clock):
        raise CourseInputError(f"clock must be a function returning seconds, such as time.perf_counter or "
                               f"time.process_time, got {type(clock).__name__}.")
    repeats = check_int(repeats, "repeats", minimum=1)
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


if __name__ == "__main__":
    print(course_map_markdown())
