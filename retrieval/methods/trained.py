"""The trained candidates, ``setfit`` and ``finetune``: heads that move the encoder itself, scored and stored
like the fast candidates but trained within a time budget (``index build --budget MINUTES``).

Training is passed in, not imported: `retrieval` may not import `finetune` (the arrow rule between packages), so
the CLI, or a library user, hands over the trainers of :func:`fewlabel.finetune.classify.index_heads.index_trainers`.
A trainer is ``trainer(texts, label_rows, labels, multi_label=…, seconds=…)`` and returns a model with
``predict_proba(texts) -> (n, L)``; it stops training when ``seconds`` have passed (a transformers callback),
so the budget holds on any machine.

Stored form (inside ``method/``, every file's sha256 in meta.json like the other methods, and no pickle):

* ``finetune``: ``model/`` is the transformers folder (config.json with ``id2label``, safetensors weights,
  tokenizer files), loaded by :class:`fewlabel.indexing.text_classifier.TextClassifier`;
* ``setfit``: ``model/`` is the fine-tuned sentence-transformers body, and the logistic-regression head
  (setfit pickles it with joblib) is kept as plain arrays in ``arrays.npz``, as the ``linear`` method's."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fewlabel.indexing.errors import IndexMismatchError
from fewlabel.retrieval.methods.common import Views, decide, tune_thresholds
from fewlabel.retrieval.methods.linear import linear_proba, one_vs_rest_arrays, single_label_arrays
from fewlabel.retrieval.methods.registry import LabellingMethod, MethodParts, MethodSpec, register

__all__ = ["TrainedHead", "Trainer"]

Trainer = Callable[..., Any]  # returns a SetFit wrapper or a TextClassifier: both predict_proba, save, labels


def _folder_files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by its relative path (what `LabelIndex` stores under ``method/model/``)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write_files(files: dict[str, bytes], folder: Path) -> None:
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class _StoredSetFit:
    """A SetFit model read back from an index folder: its body encodes, the head's arrays decide."""

    def __init__(self, body, coef: np.ndarray, intercept: np.ndarray, multi_label: bool, prefix: str,
                 normalize: bool) -> None:
        self.body, self.coef, self.intercept = body, coef, intercept
        self.multi_label, self.prefix, self.normalize = multi_label, prefix, normalize

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.intercept)), dtype=np.float32)
        vectors = self.body.encode([self.prefix + t for t in texts], batch_size=batch_size,
                                   normalize_embeddings=self.normalize, convert_to_numpy=True)
        return linear_proba(vectors, self.coef, self.intercept, self.multi_label).astype(np.float32)


def _setfit_head_arrays(model, n_labels: int, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """The sklearn head of a trained ``SetFitModel`` as (coef, intercept) for :func:`linear_proba`."""
    head = model.model_head
    if multi_label:  # OneVsRestClassifier: one LogisticRegression per label, or a constant predictor
        models: list = []
        constant: list[bool | None] = []
        for estimator in head.estimators_:
            if hasattr(estimator, "coef_"):
                models.append(estimator)
                constant.append(None)
            else:  # sklearn's _ConstantPredictor for a label every (or no) row carries
                models.append(None)
                constant.append(bool(np.ravel(estimator.y_)[0]))
        dim = next((m.coef_.shape[1] for m in models if m is not None),
                   model.model_body.get_sentence_embedding_dimension())
        return one_vs_rest_arrays(models, constant, dim)
    present = np.asarray(head.classes_, dtype=np.int64)
    dim = head.coef_.shape[1]
    return single_label_arrays(head, present, n_labels, dim)


class TrainedHead(LabellingMethod):
    """``setfit`` or ``finetune`` as a candidate: fit = train within ``seconds``; state = its probabilities;
    multi-label thresholds per label tuned on validation rows (single-label: the top label)."""

    def __init__(self, name: str, trainer: Trainer | None = None, seconds: float = 0.0,
                 labels: list[str] | None = None) -> None:
        self.name, self.trainer, self.seconds, self.labels = name, trainer, float(seconds), labels

    def fit_views(self, views: Views, y: np.ndarray, multi_label: bool) -> TrainedHead:
        y = np.asarray(y, dtype=bool)
        labels = self.labels or [str(j) for j in range(y.shape[1])]
        rows = [tuple(labels[j] for j in np.flatnonzero(r)) for r in y]
        self.multi_label_ = bool(multi_label)
        assert self.trainer is not None, "a TrainedHead fits only with a trainer (from_files gives a fitted one)"
        self.model_ = self.trainer(list(views.texts), rows, labels, multi_label=multi_label, seconds=self.seconds)
        return self

    def state(self, views: Views) -> dict[str, np.ndarray]:
        return {"proba": np.asarray(self.model_.predict_proba(list(views.texts)), dtype=np.float64)}

    def select(self, state: dict, y: np.ndarray, metric: str) -> dict:
        if not self.multi_label_:
            return {}
        return {"thresholds": [float(t) for t in tune_thresholds(state["proba"], y)]}

    def proba(self, state: dict, settings: dict) -> np.ndarray:
        return state["proba"]

    def decide(self, state: dict, settings: dict) -> np.ndarray:
        return decide(state["proba"], self.multi_label_, settings.get("thresholds"))

    # ---- stored form -----------------------------------------------------------------------------
    def to_files(self) -> MethodParts:
        """Model settings, the SetFit head's arrays, and the model folder's files."""
        info = {k: v for k, v in (getattr(self.model_, "info", None) or {}).items()
                if isinstance(v, (str, int, float, bool)) or v is None}
        settings = {"multi_label": self.multi_label_, "prefix": getattr(self.model_, "prefix", ""), "trained": info}
        if self.name == "finetune":
            return MethodParts({**settings, "max_length": int(self.model_.max_length)}, {}, None, self._folder_files())
        model = self.model_.model
        coef, intercept = _setfit_head_arrays(model, len(self.model_.labels), self.multi_label_)
        return MethodParts({**settings, "normalize": bool(getattr(model, "normalize_embeddings", False))},
                           {"head_coef": coef, "head_intercept": intercept}, None, self._folder_files())

    def _folder_files(self) -> dict[str, bytes]:
        from fewlabel.indexing.hf import quiet_hf

        with tempfile.TemporaryDirectory(prefix="fewlabel-trained-") as tmp, quiet_hf():  # no "Writing shards" bar
            if self.name == "finetune":
                self.model_.save(tmp)
            else:
                self.model_.model.model_body.save(tmp)
            return _folder_files(Path(tmp))

    @classmethod
    def from_files(cls, name: str, parts: MethodParts, labels: list[str]) -> TrainedHead:
        """Load a stored head; ``parts.folder`` holds the model folder's files (already checked against their
        sha256)."""
        settings, arrays = parts.settings, parts.arrays
        if not parts.folder:
            raise IndexMismatchError(f"the {name} model's files are missing from the index's method/model/ folder")
        head = cls(name, labels=labels)
        head.multi_label_ = bool(settings["multi_label"])
        with tempfile.TemporaryDirectory(prefix="fewlabel-trained-") as tmp:
            _write_files(parts.folder, Path(tmp))
            if name == "finetune":
                from fewlabel.indexing.text_classifier import TextClassifier

                head.model_ = TextClassifier.load(tmp, multi_label=head.multi_label_, prefix=settings.get("prefix", ""),
                                                  max_length=int(settings.get("max_length", 128)))
                if head.model_.labels != list(labels):
                    raise IndexMismatchError(f"the stored fine-tuned head names labels {head.model_.labels}, the "
                                             f"method names {labels}; rebuild the index")
            else:
                from sentence_transformers import SentenceTransformer

                from fewlabel.indexing.hf import quiet_hf

                with quiet_hf():
                    body = SentenceTransformer(tmp, device="cpu")
                head.model_ = _StoredSetFit(body, arrays["head_coef"], arrays["head_intercept"], head.multi_label_,
                                            settings.get("prefix", ""), bool(settings.get("normalize")))
        return head


def _trained_spec(name: str, summary: str, rank: int) -> MethodSpec:
    return MethodSpec(name=name, summary=summary, kind="trained", rank=rank, bench="own",
                      factory=lambda context: TrainedHead(name, *context.trained[name]),
                      load=lambda parts, labels: TrainedHead.from_files(name, parts, labels))


register(_trained_spec("setfit", "SetFit: contrastive fine-tuning of the encoder, then a logistic head (needs "
                                 "--budget)", 100))
register(_trained_spec("finetune", "a classification head fine-tuned with the encoder (needs --budget)", 110))
