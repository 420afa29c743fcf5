"""What a notebook says it needs, against what it loads: course_lib modules and shipped checkpoints.   [notebook 00]

A learner who opens notebook N after the notebooks its opening cell names ("Needs: notebooks 02 and 03") must meet
nothing they have not been taught. So every course_lib module a notebook imports and every checkpoint or results
file it loads has a home, the notebook that introduces it, and that home must be N itself or among the notebooks N
needs (followed through their own needs).

- A module's home is the first notebook its docstring's tag names ("[notebooks 04-08]" -> 04); a tag such as
  "[every notebook]" or "[tests]" gives none.
- A checkpoint's or results file's home is in HOMES below: the notebook that trains or measures it.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

from course_lib import environment
from course_lib.validation import CourseInputError

# Where each shipped checkpoint (data/<name>/) and results file (data/<name>.json) is introduced: trained, or measured.
HOMES = {
    "ddpm_moons": "03", "ddpm_digits": "03", "ddpm_digits_cond": "06", "vae": "04", "clip": "05", "clip_lit": "05",
    "text2image": "06", "sd_shapes": "06", "sampler_results": "03b", "inversion_results": "07",
    "shapesedit_results": "07", "instruct_pix2pix": "09", "prompt_writer": "09", "instruction_results": "09",
    "vae16": "10", "flow_transformer": "10", "sd3_shapes": "10", "family_results": "10",
    "shapesedit_flow_results": "10",
}
# Calls that load a shipped checkpoint without naming its folder, and the checkpoint each loads.
LOADERS = {
    "text2image.load_parts": "text2image", "text2image.load_text_encoder": "text2image",
    "vae_lib.load_vae": "vae", "vae.load_vae": "vae", "clip.load": "clip",
    "instruct_pix2pix.load_parts": "instruct_pix2pix", "language.load_writer": "prompt_writer",
    "language.load_instruction_model": "instruct_pix2pix", "shapesedit.load_results": "shapesedit_results",
    "flow_text2image.load_system": "flow_transformer", "flow_text2image.load_pipeline": "sd3_shapes",
}
_NAMED = re.compile(r"""(?:checkpoints\.load|load_pipeline)\(\s*["']([a-z0-9_]+)["']""")
_RESULTS = re.compile(r"""data/([a-z0-9_]+)\.json""")
_ID = r"(\d\d[a-z]?)"


def notebook_id(name: str) -> str:
    """Return a notebook's id, the digits and letter its file name starts with ("03b_fast..." -> "03b")."""
    found = re.match(_ID, Path(name).name)
    if found is None:
        raise CourseInputError(f"{name!r} is not a course notebook name (they start with their number, e.g. 03b_...).")
    return found[1]


def stated_needs(notebook: dict) -> set[str]:
    """Return the notebook ids the opening cell's "Needs" names; a range "04-06" (or "04–06") names each one."""
    text = environment.opening(notebook)["needs"]
    text = re.sub(r"\(.*?\)", "", text)  # what a notebook is needed for, in brackets, names no notebook
    ids = set()
    for first, last in re.findall(_ID + r"\s*[-–]\s*" + _ID, text):
        ids |= {f"{k:02d}" for k in range(int(first[:2]), int(last[:2]) + 1)} | {first, last}
    ids |= set(re.findall(r"\b" + _ID + r"\b", text))
    return ids


def module_home(module: str) -> str | None:
    """Return the notebook that introduces course_lib.<module>: the first one its docstring's tag names, or None."""
    doc = (importlib.import_module(f"course_lib.{module}").__doc__ or "").split("\n", 1)[0]
    tag = re.findall(r"\[([^\]]*)\]", doc)
    found = re.search(r"\b" + _ID + r"\b", tag[-1]) if tag else None
    return found[1] if found else None


def _cells(notebook: dict) -> list[str]:
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in notebook["cells"] if c["cell_type"] == "code"]


def _imported(source: str) -> set[str]:
    """Return the course_lib modules one cell imports (IPython's % and ! lines left out)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return set()
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "course_lib":
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("course_lib."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("course_lib.")}
    return out


def loaded(notebook: dict) -> dict[str, str | None]:
    """Return what a notebook's code uses -> its home: "module X" for each course_lib module, and each checkpoint."""
    environment.check_notebook(notebook)
    cells = _cells(notebook)
    code = "\n".join(cells)
    used = {f"module {m}": module_home(m) for cell in cells for m in _imported(cell)}
    names = set(_NAMED.findall(code)) | set(_RESULTS.findall(code))
    names |= {target for call, target in LOADERS.items() if call + "(" in code}
    for name in names:
        if name not in HOMES:
            raise CourseInputError(f"{name!r} is loaded but has no home notebook in prerequisites.HOMES: add it.")
        used[name] = HOMES[name]
    return used


def unmet(folder: Path | None = None) -> dict[str, list[str]]:
    """Return, per notebook, what it loads whose home is neither itself nor among its needs (followed through)."""
    paths = environment.notebook_paths(folder)
    books = {notebook_id(p.name): json.loads(p.read_text()) for p in paths}
    needs = {k: stated_needs(nb) for k, nb in books.items()}
    missing = {}
    for k, nb in books.items():
        closure, todo = set(), list(needs[k])
        while todo:
            n = todo.pop()
            if n not in closure:
                closure.add(n)
                todo += needs.get(n, [])
        missing[k] = sorted(f"{what} (from {home})" for what, home in loaded(nb).items()
                            if home is not None and home != k and home not in closure)
    return {k: v for k, v in missing.items() if v}
