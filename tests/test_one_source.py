"""Facts that two layers must agree on have one home each: these tests check
that every user reads that home, so a drift cannot be built."""

from __future__ import annotations

import importlib.util
import pathlib
import re

import pytest

import picoproc.native as native
from picoproc import libos, native_version, trace
from picoproc.fspolicy import FsPolicy

pytestmark = pytest.mark.unit

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load_build_native():
    spec = importlib.util.spec_from_file_location("build_native_under_test", ROOT / "native" / "build_native.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_native_version_has_one_definition():
    # The build compiles the number it reads from picoproc.native_version,
    # and the loader of the module compares against the same number.
    assert _load_build_native().NATIVE_VERSION == native_version.NATIVE_VERSION
    assert native.EXPECTED_NATIVE_VERSION == native_version.NATIVE_VERSION
    assert native.lib.PICO_NATIVE_VERSION == native_version.NATIVE_VERSION
    # No second literal anywhere in the build script or the loader.
    for path in (ROOT / "native" / "build_native.py", ROOT / "sandbox" / "native.py"):
        assert not re.search(r"NATIVE_VERSION\s*=\s*\d", path.read_text()), path


def test_device_list_has_one_definition():
    header = (ROOT / "libos" / "devices.h").read_text()
    rows = re.findall(r"LIBOS_DEVICE\((\w+), (\d+)\)", header)
    assert rows and tuple((n, int(m)) for n, m in rows) == libos.devices()
    names = tuple(n for n, _ in rows)
    with FsPolicy() as policy:
        mounted = [guest for guest, *_ in policy._library_os_devices()]
    assert mounted == [f"/dev/{n}" for n in names if pathlib.Path(f"/dev/{n}").exists()]
    assert trace.DEVICE_PATHS == {f"/dev/{n}" for n in names}
    # The library OS's own table is built from the same macro, not spelled again.
    special = (ROOT / "libos" / "special.c").read_text()
    assert "LIBOS_DEVICES(" in special
    assert not re.search(r'\{"(null|zero|full|random|urandom)", \d+\}', special)


def test_device_rows_in_another_form_are_refused(tmp_path, monkeypatch):
    # A row the pattern cannot read must fail loudly, never drop a device.
    bad = (ROOT / "libos" / "devices.h").read_text().replace("LIBOS_DEVICE(zero, 5)", "LIBOS_DEVICE(zero,5)")
    (tmp_path / "devices.h").write_text(bad)
    (tmp_path / "__init__.py").write_text("")
    monkeypatch.setattr(libos, "__file__", str(tmp_path / "__init__.py"))
    libos.devices.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="devices.h"):
            libos.devices()
    finally:
        monkeypatch.undo()
        libos.devices.cache_clear()
