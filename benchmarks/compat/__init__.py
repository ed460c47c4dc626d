"""``picoproc bench compat``: CPython's regression tests, module by module,
natively and inside a picoprocess, compared test by test."""
