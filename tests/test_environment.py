import torch

from course_lib import environment


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
