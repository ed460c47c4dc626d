"""The version of the C interface of ``picoproc._native``: its only home.

native/build_native.py compiles it into the module (``PICO_NATIVE_VERSION``,
reading this file by path: the package is not importable while it is being
built), and picoproc/native.py refuses a module whose number differs, so an
old .so is never silently used with newer Python code.  Bump it whenever the
C interface (a cffi-visible declaration in native/*.h) changes.
"""

NATIVE_VERSION = 12
