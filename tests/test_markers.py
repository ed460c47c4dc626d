"""The suite's markers hold: every test has a kind (unit, root or
unprivileged, see conftest.py), and a unit test that starts a process or a
guest fails instead of quietly making ``-m unit`` slow."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

import conftest

pytestmark = pytest.mark.unit


def test_every_collected_test_has_a_kind():
    assert conftest.UNKINDED == [], (
        "tests without unit, root or unprivileged (a module's pytestmark or the test's own marker): "
        + ", ".join(conftest.UNKINDED))


def _collect(tmp_path, body: str, *args: str) -> subprocess.CompletedProcess:
    """Runs pytest (a process: the tests that call this are root tests) on
    a suite of one test file and the kind check, beside a copy of this
    suite's conftest.py and pytest configuration."""
    shutil.copy(conftest.REPO_ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    shutil.copy(conftest.REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "test_check.py").write_text(
        "import conftest, pytest\n\n"
        "@pytest.mark.unit\n"
        "def test_every_collected_test_has_a_kind():\n"
        "    assert conftest.UNKINDED == [], conftest.UNKINDED\n")
    (tmp_path / "test_new.py").write_text(textwrap.dedent(body))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), "-c", str(tmp_path / "pyproject.toml"),
                           *args, str(tmp_path)],
                          capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)


@pytest.mark.root
def test_a_test_without_a_kind_fails_the_suite(tmp_path):
    proc = _collect(tmp_path, """
        def test_forgot_its_kind():
            pass
    """)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 1 passed" in proc.stdout
    assert "test_new.py::test_forgot_its_kind" in proc.stdout


@pytest.mark.root
def test_an_unknown_marker_is_refused(tmp_path):
    proc = _collect(tmp_path, """
        import pytest

        @pytest.mark.unti
        def test_typo():
            pass
    """)
    assert proc.returncode != 0 and "'unti' not found in `markers`" in proc.stdout + proc.stderr


@pytest.mark.root
def test_the_closest_kind_wins_and_selection_follows_it(tmp_path):
    proc = _collect(tmp_path, """
        import pytest

        pytestmark = pytest.mark.root

        def test_module_kind():
            pass

        @pytest.mark.unit
        def test_own_kind():
            pass
    """, "-m", "unit", "--collect-only")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "test_new.py::test_own_kind" in proc.stdout
    assert "test_module_kind" not in proc.stdout


@pytest.mark.root
def test_a_unit_test_that_starts_a_process_fails(tmp_path):
    proc = _collect(tmp_path, """
        import subprocess
        import pytest

        @pytest.mark.unit
        def test_runs_true():
            subprocess.run(["true"], check=True)

        @pytest.mark.root
        def test_may_run_true():
            subprocess.run(["true"], check=True)
    """, "-k", "true")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 1 passed" in proc.stdout and "a unit test started a process" in proc.stdout


@pytest.mark.root
def test_a_unit_test_that_spawns_a_guest_fails(tmp_path, guest_bin):
    proc = _collect(tmp_path, f"""
        import pytest
        from picoproc.raw import run_raw

        @pytest.mark.unit
        def test_spawns_hello():
            run_raw(["{guest_bin / 'hello'}"])

        @pytest.mark.root
        def test_may_spawn_hello():
            assert run_raw(["{guest_bin / 'hello'}"]).exit_code == 0
    """, "-k", "hello")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 1 passed" in proc.stdout and "a unit test spawned a picoprocess" in proc.stdout
