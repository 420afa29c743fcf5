"""course_lib.claims: a claim prints one machine-independent line when it holds and raises when it does not."""

import math

import pytest
import torch

from course_lib import claims
from course_lib.validation import CourseInputError


def test_close_prints_the_bound_not_the_difference(capsys):
    a = torch.ones(3, 4)
    assert claims.close("ours vs library", a, a + 2**-21, atol=1e-5) is None  # None: nothing echoes in a cell
    assert capsys.readouterr().out == "ours vs library: max |difference| <= 1e-05: yes\n"
    assert claims.max_difference(a, a + 2**-21) == 2**-21  # exact in float32: the figure, for those who want it


def test_close_raises_with_the_figure_when_the_claim_fails_or_is_nan():
    with pytest.raises(AssertionError, match=r"0\.001 is above the claimed 1e-05"):
        claims.close("x", torch.zeros(2), torch.tensor([0.0, 1e-3]))
    with pytest.raises(AssertionError):
        claims.close("x", torch.zeros(2), torch.tensor([0.0, math.nan]))
    with pytest.raises(CourseInputError, match="shapes"):
        claims.close("x", torch.zeros(2), torch.zeros(3))
    with pytest.raises(CourseInputError, match="atol"):
        claims.close("x", torch.zeros(2), torch.zeros(2), atol=0)


def test_bands_print_the_band_and_raise_outside_it(capsys):
    claims.within("accuracy", 0.93, 0.85, 1.0, percent=True)
    claims.within("PSNR", torch.tensor(38.24), 35, 45, unit=" dB")
    claims.at_most("error", 0.004, 0.01)
    claims.at_least("gain", 3.0, 1.5, digits=1, unit=" dB")
    claims.holds("rows sum to 1", torch.ones(3).bool())
    assert capsys.readouterr().out.splitlines() == [
        "accuracy: in [85 %, 100 %]: yes", "PSNR: in [35, 45] dB: yes", "error: <= 0.01: yes",
        "gain: >= 1.5 dB: yes", "rows sum to 1: yes"]
    with pytest.raises(AssertionError, match="outside the expected band"):
        claims.within("accuracy", 0.5, 0.85, 1.0, percent=True)
    with pytest.raises(AssertionError):
        claims.within("accuracy", math.nan, 0.0, 1.0)
    with pytest.raises(AssertionError):
        claims.at_most("error", math.nan, 1.0)
    with pytest.raises(AssertionError):
        claims.at_least("gain", 1.0, 1.5)
    with pytest.raises(AssertionError, match="does not hold"):
        claims.holds("rows sum to 1", False)
    with pytest.raises(CourseInputError, match="low <= high"):
        claims.within("x", 1.0, 2.0, 1.0)
    with pytest.raises(CourseInputError, match="one number"):
        claims.within("x", torch.ones(2), 0.0, 2.0)
