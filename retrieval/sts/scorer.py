"""Semantic textual similarity: score sentence pairs 0-5 with a bi-encoder or a cross-encoder.

Two kinds of model, told apart by the folder:

- **bi-encoder** (a registry name, an encoder folder, a hub id): each distinct text is encoded once by
  :class:`~fewlabel.indexing.Encoder` (mean pooling, L2-normalised), the pair's cosine is mapped to 0-5 by
  a :class:`Calibration`: ``default`` is ``5 * clip(cosine, 0, 1)``; ``linear`` and ``isotonic`` are fitted
  on labelled pairs. Cosine is symmetric, so ``score(a, b) == score(b, a)``.
- **cross-encoder** (a folder written by ``fewlabel.finetune.sts.trainer.train_sts_cross_encoder``, whose
  ``fewlabel_model.json`` says ``"kind": "sts-cross-encoder"``, or any sequence-classification folder
  with one output): the model reads both sentences together; its sigmoid output (0-1) times the scale
  (5) is the score, averaged over both sentence orders so the score is symmetric too.

Outputs keep the competition format: a CSV with ``id,target``; the model, calibration and metrics go
to ``OUT.csv.meta.json`` beside it. Both are written atomically."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fewlabel.indexing.encoders.cache import EmbeddingCache, encode_with_cache
from fewlabel.indexing.encoders.encoder import Encoder, transformer_folder
from fewlabel.indexing.encoders.registry import DEFAULT_MODEL
from fewlabel.indexing.errors import InvalidArgumentError, ModelError
from fewlabel.indexing.files import atomic_file
from fewlabel.indexing.hf import load_cross_encoder
from fewlabel.indexing.model_folder import read_marker
from fewlabel.indexing.sts.pairs import MAX_SCORE, PairRow
from fewlabel.indexing.sts.scoring import score_both_orders
from fewlabel.retrieval.outputs import write_meta

__all__ = ["BI_ENCODER", "CROSS_ENCODER", "CALIBRATIONS", "Calibration", "STSScorer",
           "model_kind", "write_scores"]

BI_ENCODER, CROSS_ENCODER = "bi-encoder", "cross-encoder"
CALIBRATIONS = ("default", "linear", "isotonic")
DEFAULT_MAP = "5 * clip(cosine, 0, 1)"

Pair = PairRow | tuple[str, str] | Sequence[str]


# ---- calibration ---------------------------------------------------------------------------------
class Calibration:
    """Maps a similarity (cosine) to a 0-5 score; always clipped to [0, 5].

    ``default``: ``5 * clip(x, 0, 1)``, no fitting. ``linear``: least squares ``a * x + b``
    (scikit-learn ``LinearRegression``). ``isotonic``: the monotone step fit of scikit-learn's
    ``IsotonicRegression(out_of_bounds="clip")``, kept as its thresholds so it serialises to a small
    dict and predicts with ``np.interp`` exactly as scikit-learn does. ``fit`` returns self; learned
    state lives in attributes ending in ``_``."""

    def __init__(self, method: str = "default") -> None:
        if method not in CALIBRATIONS:
            raise InvalidArgumentError(f"unknown calibration '{method}'; choose from {', '.join(CALIBRATIONS)}")
        self.method = method
        self.coef_: float | None = None
        self.intercept_: float | None = None
        self.x_thresholds_: np.ndarray | None = None
        self.y_thresholds_: np.ndarray | None = None
        self.n_fit_: int = 0

    @property
    def fitted(self) -> bool:
        return self.method == "default" or self.n_fit_ > 0

    def fit(self, similarity: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray) -> Calibration:
        x = np.asarray(similarity, dtype=np.float64).reshape(-1)
        y = np.asarray(scores, dtype=np.float64).reshape(-1)
        if x.shape != y.shape:
            raise InvalidArgumentError(f"calibration: {x.size} similarities but {y.size} scores")
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise InvalidArgumentError("calibration: similarities and scores must be finite numbers")
        if self.method == "default":
            return self
        if x.size < 2 or np.ptp(x) == 0:
            raise InvalidArgumentError(f"{self.method} calibration needs at least 2 labelled pairs with different "
                                f"similarities (got {x.size})")
        if self.method == "linear":
            from sklearn.linear_model import LinearRegression

            reg = LinearRegression().fit(x.reshape(-1, 1), y)
            self.coef_, self.intercept_ = float(reg.coef_[0]), float(reg.intercept_)
        else:
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=MAX_SCORE).fit(x, y)
            self.x_thresholds_ = np.asarray(iso.X_thresholds_, dtype=np.float64)
            self.y_thresholds_ = np.asarray(iso.y_thresholds_, dtype=np.float64)
        self.n_fit_ = int(x.size)
        return self

    def predict(self, similarity: Sequence[float] | np.ndarray) -> np.ndarray:
        x = np.asarray(similarity, dtype=np.float64).reshape(-1)
        if self.method == "default":
            out = MAX_SCORE * np.clip(x, 0.0, 1.0)
        elif not self.fitted:
            raise InvalidArgumentError(f"{self.method} calibration is not fitted: give labelled pairs to fit it on")
        elif self.method == "linear":
            assert self.coef_ is not None and self.intercept_ is not None  # fitted
            out = self.coef_ * x + self.intercept_
        else:
            assert self.x_thresholds_ is not None and self.y_thresholds_ is not None  # fitted
            out = np.interp(x, self.x_thresholds_, self.y_thresholds_)
        return np.clip(out, 0.0, MAX_SCORE)

    def to_dict(self) -> dict:
        out: dict = {"method": self.method, "n_fit": self.n_fit_}
        if self.method == "default":
            out["map"] = DEFAULT_MAP
        elif self.method == "linear" and self.fitted:
            out.update(coef=self.coef_, intercept=self.intercept_)
        elif self.method == "isotonic" and self.fitted:
            assert self.x_thresholds_ is not None and self.y_thresholds_ is not None  # fitted
            out.update(x=self.x_thresholds_.tolist(), y=self.y_thresholds_.tolist())
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        try:
            cal = cls(data["method"])
            cal.n_fit_ = int(data.get("n_fit", 0))
            if cal.method == "linear" and cal.n_fit_:
                cal.coef_, cal.intercept_ = float(data["coef"]), float(data["intercept"])
            elif cal.method == "isotonic" and cal.n_fit_:
                cal.x_thresholds_ = np.asarray(data["x"], dtype=np.float64)
                cal.y_thresholds_ = np.asarray(data["y"], dtype=np.float64)
                if cal.x_thresholds_.shape != cal.y_thresholds_.shape or cal.x_thresholds_.size == 0:
                    raise ValueError("x and y thresholds differ in length")
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"not a calibration record ({type(exc).__name__}: {exc})") from exc
        return cal

    def __repr__(self) -> str:
        return f"Calibration({self.to_dict()})"


# ---- which kind of model -------------------------------------------------------------------------
def model_kind(model: str | os.PathLike) -> str:
    """``cross-encoder`` for a folder fewlabel trained as one (its marker file) or whose config names a
    sequence-classification architecture; ``bi-encoder`` for everything else (registry names, encoder
    folders, hub ids)."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return BI_ENCODER
    info = read_marker(path)
    if info is not None:
        kind = str(info.get("kind", ""))
        if kind.endswith(CROSS_ENCODER):
            return CROSS_ENCODER
        if kind.endswith(BI_ENCODER):
            return BI_ENCODER
    config = transformer_folder(path) / "config.json"
    if config.is_file():
        architectures = _read_json(config).get("architectures") or []
        if any(str(a).endswith("ForSequenceClassification") for a in architectures):
            return CROSS_ENCODER
    return BI_ENCODER


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def _pair_texts(pairs: Sequence[Pair]) -> tuple[list[str], list[str]]:
    first, second = [], []
    for pair in pairs:
        if isinstance(pair, PairRow):
            first.append(pair.sentence1)
            second.append(pair.sentence2)
        else:
            a, b = pair
            first.append(str(a))
            second.append(str(b))
    return first, second


# ---- the scorer ----------------------------------------------------------------------------------
class STSScorer:
    """Score sentence pairs 0-5.

    ``model``: a registry name, a folder (encoder or cross-encoder, told apart by :func:`model_kind`), a
    hub id, or an already loaded :class:`~fewlabel.indexing.Encoder`. ``calibration`` (bi-encoders): a
    method name (``default``, ``linear``, ``isotonic``; the last two need :meth:`fit`) or a fitted
    :class:`Calibration` (e.g. ``Calibration.from_dict`` of a saved scores' metadata).

        scorer = STSScorer("e5-small", calibration="isotonic").fit(train_pairs)
        scorer.predict([("비행기가 이륙한다.", "비행기가 뜬다.")])   # -> array([4.2…])"""

    def __init__(self, model: str | os.PathLike | Encoder = DEFAULT_MODEL, *,
                 calibration: str | Calibration | None = None, device: str | None = None, batch_size: int = 32,
                 max_length: int | None = None, cache: EmbeddingCache | None = None,
                 show_progress: bool = False) -> None:
        self.batch_size = batch_size
        self.cache = cache
        self.show_progress = show_progress
        self.encoder: Encoder | None = None
        self.cross_encoder: Any = None  # a sentence-transformers CrossEncoder when kind is cross-encoder
        self.calibration_: Calibration | None
        self.scale = MAX_SCORE
        self.model_info: dict = {}
        if isinstance(model, (str, os.PathLike)):
            self.kind = model_kind(model)
            if self.kind == CROSS_ENCODER:
                self._load_cross_encoder(Path(model).expanduser().resolve(), device, max_length)
            else:
                self.encoder = Encoder(str(model), device=device, max_length=max_length)
        elif hasattr(model, "encode") and hasattr(model, "describe"):
            self.kind, self.encoder = BI_ENCODER, model
        else:
            raise InvalidArgumentError(f"STSScorer needs a model name, folder or Encoder, not {type(model).__name__}")
        if self.kind == CROSS_ENCODER:
            if calibration not in (None, "default"):
                raise InvalidArgumentError("a cross-encoder scores 0-5 itself; calibration applies to bi-encoders only")
            self.calibration_ = None
        elif isinstance(calibration, Calibration):
            self.calibration_ = calibration
        else:
            self.calibration_ = Calibration(calibration or "default")

    def _load_cross_encoder(self, folder: Path, device: str | None, max_length: int | None) -> None:
        info = read_marker(folder) or {}
        self.model_info = info
        self.scale = float(info.get("scale", MAX_SCORE))
        self.cross_encoder = load_cross_encoder(folder, what="cross-encoder", device=device,
                                                max_length=max_length or info.get("max_length"))
        if self.cross_encoder.num_labels != 1:
            raise ModelError(f"cross-encoder '{folder}' has {self.cross_encoder.num_labels} outputs; an STS "
                             "cross-encoder has one (a similarity score)")
        self.location = str(folder)

    # -- sklearn-like API --
    def fit(self, pairs: Sequence[Pair], scores: Sequence[float] | None = None) -> STSScorer:
        """Fit the calibration on labelled pairs (PairRows carry their scores; else give ``scores``)."""
        if self.kind == CROSS_ENCODER:
            raise InvalidArgumentError("a cross-encoder scores 0-5 itself; calibration applies to bi-encoders only")
        gold = _gold_scores(pairs, scores)
        assert self.calibration_ is not None  # a bi-encoder always has one
        self.calibration_.fit(self.similarity(pairs), gold)
        return self

    def similarity(self, pairs: Sequence[Pair]) -> np.ndarray:
        """Raw similarity: cosine (bi-encoder) or the model's 0-1 output (cross-encoder, both orders)."""
        first, second = _pair_texts(pairs)
        if not first:
            return np.zeros(0, dtype=np.float64)
        if self.kind == CROSS_ENCODER:
            return score_both_orders(self.cross_encoder, first, second, batch_size=self.batch_size,
                                     show_progress=self.show_progress)
        unique = list(dict.fromkeys(first + second))
        assert self.encoder is not None  # a bi-encoder always has one
        vectors = encode_with_cache(self.encoder, unique, self.cache, batch_size=self.batch_size, normalize=True,
                                    show_progress_bar=self.show_progress).astype(np.float64)
        row = {text: i for i, text in enumerate(unique)}
        a = vectors[[row[t] for t in first]]
        b = vectors[[row[t] for t in second]]
        return np.einsum("ij,ij->i", a, b)

    def predict(self, pairs: Sequence[Pair]) -> np.ndarray:
        """Scores in [0, 5], one per pair, in input order."""
        sim = self.similarity(pairs)
        if self.kind == CROSS_ENCODER:
            return np.clip(sim * self.scale, 0.0, MAX_SCORE)
        assert self.calibration_ is not None  # a bi-encoder always has one
        return self.calibration_.predict(sim)

    def describe(self) -> dict:
        if self.kind == CROSS_ENCODER:
            return {"kind": CROSS_ENCODER, "model": self.location, "scale": self.scale, "both_orders": True,
                    "max_length": int(self.cross_encoder.max_seq_length),
                    "base": self.model_info.get("base"), "trained": self.model_info.get("trained_at")}
        assert self.encoder is not None and self.calibration_ is not None  # a bi-encoder always has both
        return {"kind": BI_ENCODER, **self.encoder.describe(normalize=True),
                "calibration": self.calibration_.to_dict()}


def _gold_scores(pairs: Sequence[Pair], scores: Sequence[float] | None) -> list[float]:
    if scores is not None:
        if len(scores) != len(pairs):
            raise InvalidArgumentError(f"{len(pairs)} pairs but {len(scores)} scores")
        return [float(s) for s in scores]
    gold = [p.score if isinstance(p, PairRow) else None for p in pairs]
    if any(g is None for g in gold):
        raise InvalidArgumentError("calibration needs labelled pairs (a score on every pair)")
    return gold  # type: ignore[return-value]


# ---- output ----------------------------------------------------------------------------------------
def write_scores(rows: Sequence[PairRow], scores: Sequence[float] | np.ndarray, out: str | Path,
                 meta: dict | None = None) -> Path:
    """Write ``id,target`` (the competition format) and ``OUT.csv.meta.json``, each atomically."""
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise InvalidArgumentError(f"{out}: STS scores are written as CSV (id,target); the name must end in .csv")
    if len(rows) != len(scores):
        raise InvalidArgumentError(f"{len(rows)} pairs but {len(scores)} scores")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "target"])
        for row, score in zip(rows, scores, strict=True):
            writer.writerow([row.id, f"{float(score):.4f}"])
    if meta is not None:
        write_meta(out, meta)
    return out
