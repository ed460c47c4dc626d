"""The design document names the tests that guard each invariant; a name
that no longer exists (a test renamed or removed) would leave an invariant
unguarded while the document says otherwise."""

from __future__ import annotations

import pathlib
import re

import pytest

pytestmark = pytest.mark.unit

REPO = pathlib.Path(__file__).resolve().parent.parent


def _defined_tests() -> dict[str, set[str]]:
    """{test file name: the test functions defined in it}."""
    return {p.name: set(re.findall(r"^(?:async )?def (test_\w+)\(", p.read_text(), re.M))
            for p in (REPO / "tests").glob("test_*.py")}


def test_every_test_the_architecture_names_exists():
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    defined = _defined_tests()
    everywhere = set().union(*defined.values())
    named_files = set(re.findall(r"`(test_\w+\.py)`", text))
    named_tests = set(re.findall(r"`(test_\w+)`", text))
    assert named_tests, "the document names no test: the pattern is out of date"
    assert sorted(named_files - set(defined)) == []
    assert sorted(named_tests - everywhere) == []
    # Where a file is named and then its tests ("`test_x.py`: `test_a`,
    # `test_b`; ..."), those tests are in that file.
    misplaced = []
    for file, names in re.findall(r"`(test_\w+\.py)`:((?:\s*`test_\w+`[,;.]?(?:\s*and)?)+)", text):
        misplaced += [f"{file}: {n}" for n in re.findall(r"`(test_\w+)`", names) if n not in defined[file]]
    assert misplaced == []
