"""The stored form of a method, inside the index folder: ``method/`` with plain files only.

Layout (``METHOD_FORMAT`` 1), for every method but ``knn`` (whose k and m stay in ``meta.json["tuning"]``):

* ``method/method.json``: the method's name, the format number, the label columns in order, and its
  settings (C, thresholds, blend weight, the n-gram analyzer…);
* ``method/arrays.npz``: numpy arrays only, read with ``np.load(…, allow_pickle=False)``: the linear head's
  ``linear_coef`` (L, D) and ``linear_intercept`` (L,), Naive Bayes' ``nb_coef`` (L, V) and ``nb_intercept``;
* ``method/vocabulary.json`` (nb, ensemble): the n-gram vocabulary in column order;
* ``method/model/…`` (setfit, finetune): the trained model's folder, safetensors and JSON (see
  :mod:`fewlabel.retrieval.methods.trained`); SetFit's head is in ``arrays.npz`` as ``head_coef`` and
  ``head_intercept``.

Every method gives these parts as one :class:`~fewlabel.retrieval.methods.registry.MethodParts` and is rebuilt
by its registered ``load``, so this module knows no method by name.

Why not pickle (or joblib): an index folder is something people copy and send each other, and loading a
pickle runs whatever code its author put in it. These files hold numbers and strings, so loading one can only
give wrong labels, never run code; and ``meta.json["method"]["files"]`` records the sha256 of each, which
`LabelIndex.load` checks, so a changed file is refused instead of silently giving other labels.

:func:`method_record` and :func:`method_files` make what `LabelIndex` stores (it stores them generically,
knowing nothing of methods); :func:`load_method` turns them back into a :class:`StoredMethod` for the router."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from fewlabel.indexing.errors import IndexMismatchError
from fewlabel.retrieval.methods.common import Views, arrays_from_bytes, arrays_to_bytes
from fewlabel.retrieval.methods.registry import LabellingMethod, MethodParts, get_spec, stored_names

__all__ = ["METHOD_FORMAT", "MODEL_DIR", "StoredMethod", "load_method", "method_files", "method_record"]

METHOD_FORMAT = 1
SETTINGS_FILE, ARRAYS_FILE, VOCABULARY_FILE = "method.json", "arrays.npz", "vocabulary.json"
MODEL_DIR = "model"


def method_files(name: str, candidate: LabellingMethod, settings: dict, labels: list[str]) -> dict[str, bytes]:
    """The files of a fitted candidate (none for a method whose state is the index itself, as knn's), ready
    for ``LabelIndex.method_files``."""
    spec = get_spec(name)
    if spec.load is None:
        return {}
    candidate.keep(settings)
    parts = candidate.to_files()
    files = {SETTINGS_FILE: json.dumps({"method": name, "format": METHOD_FORMAT, "labels": list(labels),
                                        "model": parts.settings, "settings": settings},
                                       ensure_ascii=False, indent=1).encode(),
             ARRAYS_FILE: arrays_to_bytes(parts.arrays)}
    if parts.vocabulary is not None:
        files[VOCABULARY_FILE] = json.dumps(parts.vocabulary, ensure_ascii=False).encode()
    files.update({f"{MODEL_DIR}/{path}": data for path, data in parts.folder.items()})
    return files


def method_record(name: str, *, chosen_by: str, settings: dict, labels: list[str], data_fingerprint: str,
                  leaderboard: list[dict] | None = None, protocol: dict | None = None, seconds: float | None = None,
                  budget_minutes: float | None = 0.0) -> dict:
    """``meta.json["method"]`` (LabelIndex adds ``files`` with their sha256 when it saves); ``budget_minutes``
    None records the built-in default budget, which ``index add`` then applies again."""
    return {"name": name, "format": METHOD_FORMAT, "chosen_by": chosen_by, "settings": settings,
            "labels": list(labels), "data_fingerprint": data_fingerprint, "leaderboard": leaderboard or [],
            "protocol": protocol, "seconds": seconds, "budget_minutes": budget_minutes}


@dataclass
class StoredMethod:
    """A method read back from an index folder: labels in its own column order."""

    name: str
    labels: list[str]
    multi_label: bool
    candidate: LabellingMethod
    settings: dict[str, Any]
    uses_descriptions: bool = False  # it labels from the labels' descriptions too, so labels without rows count

    def predict(self, vectors: np.ndarray, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (n, L), chosen (n, L) bool) for queries given as vectors and texts."""
        state = self.candidate.state(Views(np.asarray(vectors), list(texts)))
        return self.candidate.proba(state, self.settings), self.candidate.decide(state, self.settings)


def load_method(index) -> StoredMethod | None:
    """The method an index stores (files already checked against their sha256 by `LabelIndex.load`), or None
    when it votes by kNN (no method recorded, or a method with no files of its own)."""
    record = index.method or {}
    name = record.get("name", "knn")
    where = "the index's method/ folder"
    if name == "knn":
        return None
    if name not in stored_names():
        raise IndexMismatchError(f"{where}: method '{name}' is not one this fewlabel can use (it knows knn, "
                                 f"{', '.join(stored_names())}); rebuild the index with `fewlabel index build`")
    load = get_spec(name).load
    assert load is not None
    files = index.method_files
    try:
        spec = json.loads(files[SETTINGS_FILE])
        if spec.get("format") != METHOD_FORMAT:
            raise IndexMismatchError(f"{where}: method format {spec.get('format')!r}; this fewlabel reads format "
                                     f"{METHOD_FORMAT} (rebuild the index)")
        parts = MethodParts(
            settings=spec["model"],
            arrays=arrays_from_bytes(files[ARRAYS_FILE], f"{where}/{ARRAYS_FILE}"),
            vocabulary=json.loads(files[VOCABULARY_FILE]) if VOCABULARY_FILE in files else None,
            folder={path[len(MODEL_DIR) + 1:]: data for path, data in files.items()
                    if path.startswith(MODEL_DIR + "/")})
        labels = list(spec["labels"])
        check_arrays(name, parts.arrays, n_labels=len(labels), dim=int(index.encoder["dim"]),
                     vocabulary=parts.vocabulary, where=f"{where}/{ARRAYS_FILE}")
        candidate = load(parts, labels)
    except IndexMismatchError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # AttributeError: a method.json not an object
        raise IndexMismatchError(f"{where}: incomplete or malformed method files ({type(exc).__name__}: {exc})") \
            from exc
    return StoredMethod(name=name, labels=labels, multi_label=bool(parts.settings.get("multi_label")),
                        candidate=candidate, settings=spec["settings"],
                        uses_descriptions=get_spec(name).uses_descriptions)


# the arrays each stored method needs: name -> shape, "L" labels, "D" the encoder's dimension, "V" the
# vocabulary's length, "*" any size (a SetFit body's width is its own)
_SHAPES = {"linear": {"linear_coef": ("L", "D"), "linear_intercept": ("L",)},
           "nb": {"nb_coef": ("L", "V"), "nb_intercept": ("L",)},
           "setfit": {"head_coef": ("L", "*"), "head_intercept": ("L",)}}
_SHAPES["ensemble"] = {**_SHAPES["linear"], **_SHAPES["nb"]}
_SHAPES["prior"] = _SHAPES["zeroshot"] = {"description_vectors": ("*", "D"), "centroids": ("L", "D")}


def check_arrays(name: str, arrays: dict[str, np.ndarray], *, n_labels: int, dim: int, vocabulary, where: str) -> None:
    """Refuse stored arrays that match their sha256 but not each other: the sha256 proves the file is the one
    recorded, not that it is coherent (an edited coefficient matrix, a vocabulary cut short, with the digest
    updated). Every array must be finite floating point of the shape the labels, the encoder dimension and the
    vocabulary give it, so a bad folder is one line at load instead of a numpy error mid-prediction."""
    wanted = _SHAPES.get(name, {})
    if any("V" in shape for shape in wanted.values()) and not (
            isinstance(vocabulary, list) and all(isinstance(v, str) for v in vocabulary)):
        raise IndexMismatchError(f"{where}: the method's vocabulary is missing or not a list of strings; "
                                 "rebuild the index")
    sizes = {"L": n_labels, "D": dim, "V": len(vocabulary) if isinstance(vocabulary, list) else -1}
    for key, dims in wanted.items():
        if key not in arrays:
            raise IndexMismatchError(f"{where}: array '{key}' is missing; rebuild the index")
        array = arrays[key]
        expected = tuple(array.shape[i] if d == "*" and array.ndim == len(dims) else sizes.get(d, -1)
                         for i, d in enumerate(dims))
        if array.dtype.kind != "f" or array.shape != expected or not np.isfinite(array).all():
            raise IndexMismatchError(f"{where}: array '{key}' is {array.dtype} {tuple(array.shape)}, expected "
                                     f"finite floats of shape {expected} ({n_labels} labels, encoder dimension "
                                     f"{dim}" + (f", {sizes['V']} vocabulary entries" if "V" in dims else "")
                                     + "); rebuild the index")
