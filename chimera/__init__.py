"""Chimera Bench: reproducible training benchmarks for small transformer classifiers on AG News."""
__version__ = "0.1.0"  # = pyproject.toml's version (tests/unit/test_version.py); `chimera --version`
