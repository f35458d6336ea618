"""Both offline layouts of the real AG News read to the same splits.

    CHIMERA_DATA_DIR=path/to/ag_news pytest tests/integration/test_real_data_readers.py

The original char-CNN layout is expected beside the hub-schema folder, as `ag_news_csv/`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chimera.data.dataset import load_ag_news

pytestmark = pytest.mark.integration


def data_dirs() -> tuple[Path, Path]:
    configured = os.environ.get("CHIMERA_DATA_DIR", "")
    hub = Path(configured)
    original = hub.parent / "ag_news_csv"
    if not configured or not hub.is_dir() or not original.is_dir():
        reason = (f"needs CHIMERA_DATA_DIR (hub layout) with a sibling ag_news_csv/; "
                  f"CHIMERA_DATA_DIR={configured or '(unset)'}")
        if os.environ.get("CHIMERA_REQUIRE_DATA") == "1":
            pytest.fail(f"CHIMERA_REQUIRE_DATA=1 but the data is missing: {reason}")
        pytest.skip(reason)
    return hub, original


def test_hub_and_original_layouts_read_identically() -> None:
    hub_dir, original_dir = data_dirs()
    hub, original = load_ag_news(hub_dir), load_ag_news(original_dir)
    for split in ("train", "test"):
        assert hub[split].labels == original[split].labels
        assert hub[split].texts == original[split].texts
        assert hub[split].fingerprint() == original[split].fingerprint()
    assert len(hub["test"]) == 7600
    assert hub["test"].label_counts() == {0: 1900, 1: 1900, 2: 1900, 3: 1900}
