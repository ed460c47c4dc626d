"""Build picoproc: the Python packages, the monitor's cffi module and the C artifacts.

The source tree follows DESIGN.md §6 (one top-level folder per layer); the
import package ``picoproc`` is assembled from those folders:

    picoproc          <- sandbox/   the monitor (manifest, spawn, policy, CLI)
    picoproc.abi      <- abi/       the ABI table and its generators
    picoproc._native  <- native/    C hot path, built with cffi (API mode)
    picoproc.libos    <- libos/     the library OS; build_py builds its loader image
    picoproc.bench    <- benchmarks/ performance and security suites (``picoproc bench``)
"""

import importlib.util
import pathlib

from setuptools import setup
from setuptools.command.build_py import build_py


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


setup(
    packages=["picoproc", "picoproc.abi", "picoproc.backends", "picoproc.libos",
              "picoproc.bench", "picoproc.bench.security", "picoproc.bench.perf"],
    package_dir={"picoproc": "sandbox", "picoproc.abi": "abi", "picoproc.backends": "sandbox/backends",
                 "picoproc.libos": "libos", "picoproc.bench": "benchmarks",
                 "picoproc.bench.security": "benchmarks/security",
                 "picoproc.bench.perf": "benchmarks/perf"},
    package_data={"picoproc": ["*.toml"], "picoproc.abi": ["*.toml", "*.h"], "picoproc.backends": ["data/*.json"],
                  "picoproc.libos": ["picoproc-loader", "*.h"], "picoproc.bench.security": ["guests/*.c"],
                  "picoproc.bench": ["guests/*.c"]},
    cmdclass={"build_py": build_py_with_libos},
    cffi_modules=["native/build_native.py:ffibuilder"],
    zip_safe=False,
)
