"""Benchmarks run as `python -m suprem_nnunet.benchmarks <name> [args]` (see `__main__.py` for the names)."""
