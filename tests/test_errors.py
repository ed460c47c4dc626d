"""picoproc.PicoprocError: the root of every exception picoproc raises, and
how the command line turns one into a line and an exit status."""

from __future__ import annotations

import errno
import importlib
import inspect
import json
import pkgutil
import subprocess

import pytest

import picoproc
from picoproc import cli
from picoproc.errors import PicoprocError

pytestmark = pytest.mark.unit

# Every package setup.py installs under the import name picoproc.
PACKAGES = ("picoproc", "picoproc.abi", "picoproc.libos", "picoproc.bench")
# Modules that must not import picoproc: the container backend's init runs
# as a bare script inside the new container, and its one exception never
# leaves that process (it becomes the init's exit status and message).
STANDALONE = {"picoproc.backends.container_init"}


def _modules():
    for top in PACKAGES:
        package = importlib.import_module(top)
        yield package
        for info in pkgutil.walk_packages(package.__path__, top + "."):
            if info.name.rsplit(".", 1)[-1] == "__main__":
                continue  # runs a command when imported
            yield importlib.import_module(info.name)


def _exception_classes():
    found = []
    for module in _modules():
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__):
                found.append(obj)
    return found


@pytest.mark.root
def test_every_exception_class_of_the_package_derives_from_picoproc_error():
    classes = _exception_classes()
    names = {f"{c.__module__}.{c.__qualname__}" for c in classes}
    # The walk reaches every package (a walk that found nothing would pass).
    for expected in ("picoproc.manifest.ManifestError", "picoproc.monitor.MonitorError",
                     "picoproc.abi.table.ABITableError", "picoproc.libos.build.LoaderBuildError",
                     "picoproc.bench.security.fuzz.FuzzError", "picoproc.oci.spec.SpecError"):
        assert expected in names
    outside = sorted(n for c in classes if not issubclass(c, PicoprocError)
                     and c.__module__ not in STANDALONE
                     for n in [f"{c.__module__}.{c.__qualname__}"])
    assert outside == []


def test_picoproc_error_is_exported_at_the_top():
    assert picoproc.PicoprocError is PicoprocError
    assert "PicoprocError" in picoproc.__all__


def test_each_error_keeps_its_standard_base_and_errno():
    from picoproc.api import ProgramNotExecutable, ProgramNotFound, SandboxError
    from picoproc.backends._base import BackendUnavailable
    from picoproc.cgroups import CgroupError
    from picoproc.manifest import ManifestError
    from picoproc.monitor import MonitorError
    from picoproc.native import NativeModuleError
    from picoproc.result import RunError, RunTimeout
    from picoproc.scratch import ScratchError
    from picoproc.spawn import ConfigError, SpawnError

    for cls, base in [(ManifestError, ValueError), (ConfigError, ValueError),
                      (MonitorError, OSError), (SpawnError, OSError), (ScratchError, OSError),
                      (CgroupError, OSError), (BackendUnavailable, RuntimeError),
                      (NativeModuleError, ImportError), (RunError, subprocess.CalledProcessError),
                      (RunTimeout, subprocess.TimeoutExpired), (ProgramNotFound, SandboxError)]:
        assert issubclass(cls, base) and issubclass(cls, PicoprocError), cls

    err = MonitorError(errno.ENOSPC, "mount /x: no space")
    assert err.errno == errno.ENOSPC and err.strerror == "mount /x: no space"
    assert str(err) == "[Errno 28] mount /x: no space"
    with pytest.raises(OSError):
        raise err
    assert ManifestError("bad", key="cwd").errno is None
    assert str(ManifestError("bad", key="cwd")) == "cwd: bad"
    assert ProgramNotFound("x").exit_status == 127
    assert ProgramNotExecutable("x").exit_status == 126
    assert SandboxError("x").exit_status == 125 == PicoprocError.exit_status


def test_run_error_exits_with_the_run_status():
    from picoproc.result import Result, RunError

    result = Result(argv=["prog"], exit_code=3)
    err = RunError(result)
    assert err.returncode == 3 and err.exit_status == result.exit_status == 3
    limited = Result(argv=["prog"], exit_code=0, limit="wall_time")
    assert RunError(limited).exit_status == limited.exit_status == 124


def _errors():
    from picoproc.api import ProgramNotExecutable, ProgramNotFound
    from picoproc.learn import LearnError
    from picoproc.monitor import MonitorError

    return [
        (MonitorError(errno.EMFILE, "adding guest pid 7:\n too many open files"), 125,
         "picoproc: adding guest pid 7: too many open files"),
        (ProgramNotFound("frob: not found on the guest's PATH"), 127,
         "picoproc: frob: not found on the guest's PATH"),
        (ProgramNotExecutable("/etc: is a directory"), 126, "picoproc: /etc: is a directory"),
        (LearnError("no trace"), 125, "picoproc: no trace"),
        (PicoprocError(""), 125, "picoproc: PicoprocError"),
    ]


@pytest.mark.parametrize("exc,status,line", _errors())
def test_cli_maps_an_escaped_picoproc_error_to_one_line_and_its_status(
        monkeypatch, capsys, exc, status, line):
    def fail(args):
        raise exc

    monkeypatch.setattr(cli, "_cmd_doctor", fail)
    assert cli.main(["doctor"]) == status
    out, err = capsys.readouterr()
    assert out == "" and err == line + "\n"


def test_cli_writes_the_json_result_for_an_escaped_error(monkeypatch, tmp_path, capsys):
    from picoproc.api import ProgramNotFound

    def fail(args):
        raise ProgramNotFound("frob: not found")

    monkeypatch.setattr(cli, "_cmd_run", fail)
    target = tmp_path / "r.json"
    assert cli.main(["run", "--json", str(target), "--", "frob"]) == 127
    data = json.loads(target.read_text())
    assert data["error"] == {"status": 127, "message": "frob: not found"}
    assert capsys.readouterr().err == "picoproc: frob: not found\n"


def test_cli_leaves_other_exceptions_alone(monkeypatch):
    def fail(args):
        raise KeyError("a bug, not a picoproc error")

    monkeypatch.setattr(cli, "_cmd_doctor", fail)
    with pytest.raises(KeyError):
        cli.main(["doctor"])
