"""Where the tests find the shared data sets, in one place, and the one written decision for when they are absent.

The public data sets (KorSTS, STS-B, KLUE NLI, KorNLI, SemEval, GoEmotions, NSMC) are too large to bundle, so a
clean clone does not have them. `FEWLABEL_DATA` names their folder; without it the tests look for `shared/data`
beside the clone (where the development machine keeps it). Tests that read them skip with the reason below,
which says what is missing and how to run them (benchmarks/results/mutation.md lists what a clean clone does not
check)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_ENV = "FEWLABEL_DATA"
_BESIDE_THE_CLONE = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared_data_dir() -> Path:
    """The shared data folder: `$FEWLABEL_DATA`, else `shared/data` beside the clone (it may not exist)."""
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else _BESIDE_THE_CLONE


def skip_reason(missing: Path) -> str:
    return (f"decision: real-data check skipped because {missing} is not here (the shared data sets are not "
            f"bundled with the clone; set {DATA_ENV}=/path/to/shared/data to run it)")


def require_shared(*parts: str) -> Path:
    """The path `parts` inside the shared data folder, or skip the calling test with the written reason."""
    path = shared_data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(skip_reason(path))
    return path
