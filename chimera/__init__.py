"""Chimera Bench: reproducible training benchmarks for small transformer classifiers on AG News.

The Python API (chimera/api.py; docs/api.md) is here too, imported on first use so that `import chimera` stays
light (no torch until a run starts):

    import chimera
    record = chimera.train_config(chimera.resolve_config("fixed/dense", "ci"), out_dir="runs")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # = pyproject.toml's version (tests/unit/test_version.py); `chimera --version`

if TYPE_CHECKING:
    from chimera.api import resolve_config, train_config, train_matrix
    from chimera.records.record import RunRecord
    from chimera.records.store import load_record

# name -> the module that defines it
_API = {"resolve_config": "chimera.api", "train_config": "chimera.api", "train_matrix": "chimera.api",
        "load_record": "chimera.records.store", "RunRecord": "chimera.records.record"}
__all__ = ["RunRecord", "__version__", "load_record", "resolve_config", "train_config", "train_matrix"]


def __getattr__(name: str) -> Any:
    """The API's names, imported when first asked for (PEP 562)."""
    if name not in _API:
        raise AttributeError(f"module 'chimera' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # asked once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
