"""Build picoproc: the Python packages, the monitor's cffi module and the C artifacts.

The source tree has one top-level folder per layer (docs/ARCHITECTURE.md,
"Layers and their modules"); the import package ``picoproc`` is assembled
from those folders:

    picoproc          <- sandbox/   the monitor (manifest, spawn, policy, CLI)
    picoproc.abi      <- abi/       the ABI table and its generators
    picoproc._native  <- native/    C hot path, built with cffi (API mode)
    picoproc.libos    <- libos/     the library OS; build_py builds its loader image
    picoproc.bench    <- benchmarks/ performance and security suites (``picoproc bench``)
"""

import importlib.util
import os
import pathlib

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

# setuptools has put its own distutils in place (imported above).
from distutils.command.build_scripts import build_scripts


class build_py_with_libos(build_py):
    """Builds libos/picoproc-loader (freestanding C, warnings as errors) before
    the packages are collected, so that it ships as package data and an
    editable install finds it in place."""

    def run(self):
        path = pathlib.Path(__file__).resolve().parent / "libos" / "build.py"
        spec = importlib.util.spec_from_file_location("picoproc_libos_build", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.build_loader()
        super().run()


class build_ext_replacing(build_ext):
    """An in-place build (``build_ext --inplace``, editable installs) puts
    the new picoproc/_native*.so in place with a rename instead of writing
    over the old file: a monitor running meanwhile has the old one mapped,
    and overwriting it in place crashes that monitor.  (cffi wraps this
    class with its own, which keeps this copy step.)"""

    def copy_file(self, infile, outfile, *args, **kwargs):
        if not outfile.endswith(".so") or os.path.isdir(outfile):
            return super().copy_file(infile, outfile, *args, **kwargs)
        staged = f"{outfile}.tmp{os.getpid()}"
        result = super().copy_file(infile, staged, *args, **kwargs)
        os.replace(staged, outfile)
        return outfile, result[1]


class build_scripts_editable(build_scripts):
    """The ``picoproc`` command (sandbox/bin/picoproc) puts picoproc on
    sys.path itself, without the site module's .pth hooks, so in an editable
    install it is told where each package's source folder is (what
    setuptools' import finder is told).  setuptools sets ``editable_mode``
    on the build commands that have it when it builds an editable wheel."""

    editable_mode = False

    def copy_scripts(self):
        outfiles, updated = super().copy_scripts()
        if self.editable_mode:
            root = pathlib.Path(__file__).resolve().parent
            folders = {pkg: str(root / path) for pkg, path in self.distribution.package_dir.items()}
            for out in outfiles:
                if os.path.basename(out) == "picoproc":
                    text = pathlib.Path(out).read_text()
                    pathlib.Path(out).write_text(text.replace("\nEDITABLE = {}\n", f"\nEDITABLE = {folders!r}\n", 1))
        return outfiles, updated


setup(
    packages=["picoproc", "picoproc.abi", "picoproc.backends", "picoproc.oci", "picoproc.libos",
              "picoproc.bench", "picoproc.bench.security", "picoproc.bench.perf", "picoproc.bench.compat"],
    package_dir={"picoproc": "sandbox", "picoproc.abi": "abi", "picoproc.backends": "sandbox/backends",
                 "picoproc.oci": "sandbox/oci",
                 "picoproc.libos": "libos", "picoproc.bench": "benchmarks",
                 "picoproc.bench.security": "benchmarks/security",
                 "picoproc.bench.perf": "benchmarks/perf",
                 "picoproc.bench.compat": "benchmarks/compat"},
    package_data={"picoproc": ["*.toml"], "picoproc.abi": ["*.toml", "*.h"], "picoproc.backends": ["data/*.json"],
                  "picoproc.libos": ["picoproc-loader", "*.h", "*.toml"], "picoproc.bench.security": ["guests/*.c"],
                  "picoproc.bench": ["guests/*.c", "floor/*.c", "floor/*.h"]},
    # The `picoproc` command; `picoproc-oci` is a console script (pyproject.toml).
    scripts=["sandbox/bin/picoproc"],
    cmdclass={"build_py": build_py_with_libos, "build_ext": build_ext_replacing,
              "build_scripts": build_scripts_editable},
    cffi_modules=["native/build_native.py:ffibuilder"],
    zip_safe=False,
)
