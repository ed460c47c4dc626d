"""picoproc's security benchmarks: ``surface`` (host syscalls a
confined program reaches, per backend) and ``security`` (an escape and abuse
corpus with ground truth checked from outside).  docs/SECURITY.md explains
the method and holds the latest tables, rendered from the run stored in
docs/security.json (``python -m picoproc.bench.security.report``)."""
