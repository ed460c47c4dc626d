"""Build picoproc: the Python packages, the monitor's cffi module and the C artifacts.

The source tree follows DESIGN.md §6 (one top-level folder per layer); the
import package ``picoproc`` is assembled from those folders:

    picoproc          <- sandbox/   the monitor (manifest, spawn, policy, CLI)
    picoproc.abi      <- abi/       the ABI table and its generators
    picoproc._native  <- native/    C hot path, built with cffi (API mode)
"""

from setuptools import setup

setup(
    packages=["picoproc", "picoproc.abi"],
    package_dir={"picoproc": "sandbox", "picoproc.abi": "abi"},
    package_data={"picoproc.abi": ["*.toml", "*.h"]},
    cffi_modules=["native/build_native.py:ffibuilder"],
    zip_safe=False,
)
