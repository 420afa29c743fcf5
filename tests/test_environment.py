import time

import pytest
import torch

from course_lib import environment
from course_lib.validation import CourseInputError


def test_default_device_is_usable():
    device = environment.default_device()
    assert torch.zeros(1, device=device).device.type == device.type


def test_versions_lists_the_stack():
    found = environment.versions()
    assert found["torch"].startswith(torch.__version__.split("+")[0])
    assert {"python", "diffusers", "transformers"} <= set(found)


def test_course_map_reads_every_notebook(tmp_path):
    rows = environment.course_map()
    assert rows[0]["file"] == "00_welcome.ipynb" and rows[0]["time"].endswith("min")
    assert all(row["goal"] and row["runs_on"] != "?" for row in rows)
    assert environment.course_map(tmp_path) == []


def test_median_seconds_on_the_wall_clock_and_on_the_process_cpu_clock():
    """Sleeping takes wall-clock time and no CPU time; busy work takes both. Oracle: time.sleep's own duration."""
    assert environment.median_seconds(lambda: time.sleep(0.05), repeats=3) >= 0.05
    assert environment.median_seconds(lambda: time.sleep(0.05), repeats=3, clock=time.process_time) < 0.02

    def busy():
        end = time.process_time() + 0.03
        while time.process_time() < end:
            pass

    assert environment.median_seconds(busy, repeats=3, clock=time.process_time) >= 0.03
    with pytest.raises(CourseInputError, match="clock must be a function"):
        environment.median_seconds(busy, clock=0.5)
