"""The round trip every trained index head must survive, checked the same way for fine-tuning and SetFit on
minilm (test_methods.py) and on a tiny body (test_tiny_training.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def check_round_trip_and_tamper(index, encoder, texts: list[str], route: str, folder: Path) -> dict:
    """Save ``index`` to ``folder`` and check that the loaded copy labels ``texts`` as the one in memory did (same
    labels, ``route``, scores within 1e-5), that the head's weights are stored as safetensors only (no pickle), and
    that one flipped byte in a weight file is refused on load. Returns the stored ``method/method.json``."""
    from fewlabel.indexing.errors import IndexMismatchError
    from fewlabel.indexing.store.label_index import LabelIndex
    from fewlabel.retrieval.router import Predictor

    before = Predictor(index, encoder).predict(texts)
    index.save(folder)
    meta = json.loads((folder / "meta.json").read_text())
    spec = json.loads((folder / "method" / "method.json").read_text())
    weights = [name for name in meta["method"]["files"] if name.startswith("model/") and
               name.endswith(".safetensors")]
    assert weights and not any(name.endswith((".pkl", ".joblib", ".bin")) for name in meta["method"]["files"])
    after = Predictor.load(folder, encoder).predict(texts)
    assert [p.labels for p in after] == [p.labels for p in before]
    for b, a in zip(before, after, strict=True):
        assert a.route == route and a.scores == pytest.approx(b.scores, abs=1e-5)
    weight = folder / "method" / weights[0]
    data = bytearray(weight.read_bytes())
    data[-10] ^= 1
    weight.write_bytes(bytes(data))
    with pytest.raises(IndexMismatchError, match="changed after the index was written"):
        LabelIndex.load(folder)
    return spec
