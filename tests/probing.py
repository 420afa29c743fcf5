"""What a probe of a door expects: a CourseInputError naming the parameter, or acceptance with a checked result.

Used by the probe suites (tests/test_probes_*.py): each probe is (call, expectation), and an expectation is
expect(call, capsys) raising AssertionError when the door does not hold.
"""

from __future__ import annotations

import pytest
import torch

from course_lib.validation import CourseInputError


def refused(*fragments):
    """The call must raise CourseInputError; its message holds every fragment (the first names the parameter)."""
    def expect(call, capsys=None):
        with pytest.raises(CourseInputError) as info:
            call()
        for fragment in fragments:
            assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"
    return expect


def accepted(check=None):
    """The call must succeed; check(result) (if given) must not return False (it may assert)."""
    def expect(call, capsys=None):
        result = call()
        if check is not None:
            assert check(result) is not False
    return expect


def equal(expected):
    """The call must return a tensor equal to expected() (or to expected, a tensor), bit for bit."""
    return accepted(lambda out: torch.equal(out, expected() if callable(expected) else expected))


def close(expected, atol=1e-6):
    """The call must return a tensor within atol of `expected`."""
    return accepted(lambda out: torch.testing.assert_close(out, expected, atol=atol, rtol=0) is None)
