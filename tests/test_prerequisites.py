"""Each notebook's stated prerequisites cover the course_lib modules and the checkpoints it loads."""

from __future__ import annotations

import pytest

from course_lib import prerequisites
from course_lib.validation import CourseInputError


def _notebook(needs: str, *code: str) -> dict:
    opening = (f"# 99 · A title\n\n**You will be able to:**\n- do a thing\n\n**Time:** 10 min · **Needs:** {needs} · "
               "**Runs on:** CPU")
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
            "cells": [{"cell_type": "markdown", "metadata": {}, "source": opening}]
            + [{"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None} for c in code]}


def test_every_notebook_needs_what_it_loads():
    missing = prerequisites.unmet()
    assert not missing, "\n".join(f"notebook {k} loads, without naming the notebook that introduces it: {', '.join(v)}"
                                  for k, v in missing.items())


@pytest.mark.parametrize("needs, ids", [
    ("notebooks 02 (DDPM and DDIM steps, 2 of them) and 03 (training)", {"02", "03"}),
    ("notebooks 01-03 (forward process)", {"01", "02", "03"}),
    ("notebooks 05–06 and 03b (flow matching)", {"05", "06", "03b"}),
    ("nothing. Symbols in [the table](NOTATION.md).", set()),
])
def test_stated_needs_reads_lists_and_ranges(needs, ids):
    assert prerequisites.stated_needs(_notebook(needs)) == ids


def test_module_homes_come_from_the_module_tags():
    assert prerequisites.module_home("vae") == "04"
    assert prerequisites.module_home("fast_sampling") == "03b"
    assert prerequisites.module_home("claims") is None  # "[every notebook]"
    assert prerequisites.notebook_id("03b_fast_sampling.ipynb") == "03b"
    with pytest.raises(CourseInputError, match="start with their number"):
        prerequisites.notebook_id("welcome.ipynb")


def test_loaded_finds_imports_named_checkpoints_loaders_and_results_files():
    nb = _notebook("notebook 03", "%matplotlib inline\nfrom course_lib import (checkpoints,\n    vae as vae_lib)",
                   'm = checkpoints.load("ddpm_moons")\nparts = text2image.load_parts()',
                   'json.load(open("../data/sampler_results.json"))')
    used = prerequisites.loaded(nb)
    assert used == {"module checkpoints": "03", "module vae": "04", "ddpm_moons": "03", "text2image": "06",
                    "sampler_results": "03b"}
    with pytest.raises(CourseInputError, match="no home notebook"):
        prerequisites.loaded(_notebook("notebook 03", 'checkpoints.load("mystery")'))
