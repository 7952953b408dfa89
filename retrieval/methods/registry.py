"""The one list of labelling methods: what `auto` scores, what the store can save and load, what `--method`
offers in the CLI (with its help), and what `fewlabel bench slices` compares all read it from here.

A method is one file plus one registration. The file defines a class that follows :class:`LabellingMethod`
and calls :func:`register` with a :class:`MethodSpec`; the registration is the file's module name in
:data:`BUILTIN_MODULES` (or, for a package outside fewlabel, an entry point in the ``fewlabel.methods`` group
naming that module, or a plain :func:`register` call before use). Nothing else needs to change: `auto`'s
candidate list, the tie order, the stored form and the help text are all read from the specs.

The contract splits fitting from tuning so that `auto` can tune on one part of the held-out rows and score on
another without fitting twice: ``fit_views`` learns from training rows, ``state`` turns query rows into the
arrays a decision needs (probabilities per setting, or neighbour labels for kNN), ``select`` picks settings on
labelled rows, and ``decide`` / ``proba`` apply them. ``to_files`` / ``from_files`` are its stored form: plain
JSON, numpy arrays and (for trained heads) a model folder, never pickle."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from fewlabel.indexing.errors import InvalidArgumentError

if TYPE_CHECKING:
    import numpy as np

    from fewlabel.retrieval.methods.common import Views
    from fewlabel.retrieval.methods.descriptions import LabelDescriptions

__all__ = ["BUILTIN_MODULES", "MIN_CV_ROWS", "LabellingMethod", "MethodContext", "MethodParts", "MethodSpec",
           "candidate_names", "get_spec", "make_candidate", "method_choices", "method_help", "register",
           "registered", "stored_names", "trained_names"]

# The registration of fewlabel's own methods: one module each, imported on first use of the registry.
BUILTIN_MODULES = (
    "fewlabel.retrieval.methods.knn",
    "fewlabel.retrieval.methods.linear",
    "fewlabel.retrieval.methods.nb",
    "fewlabel.retrieval.methods.ensemble",
    "fewlabel.retrieval.methods.trained",
    "fewlabel.retrieval.methods.zeroshot",
    "fewlabel.retrieval.methods.prior",
)
ENTRY_POINT_GROUP = "fewlabel.methods"
MIN_CV_ROWS = 6  # three folds of two rows: fit, tune and score each need one

Kind = Literal["fast", "trained"]


@dataclass
class MethodParts:
    """A fitted method's stored form: JSON settings of the model, plain numeric arrays, an optional vocabulary
    (n-gram models) and optional model-folder files (trained heads), by relative path."""

    settings: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    vocabulary: list[str] | None = None
    folder: dict[str, bytes] = field(default_factory=dict)


@dataclass
class MethodContext:
    """What a factory may need besides its own defaults: the largest k for kNN, this round's already fitted
    candidates (the ensemble reuses linear and nb instead of fitting them twice), for trained heads the
    trainer with its time share and the label names, and the labels' descriptions embedded by the index's
    encoder (the zero-shot and label-prior methods read them)."""

    max_k: int = 20
    fitted: dict[str, Any] = field(default_factory=dict)
    trained: dict[str, tuple[Callable[..., Any], float, list[str]]] = field(default_factory=dict)
    descriptions: LabelDescriptions | None = None


@runtime_checkable
class LabellingMethod(Protocol):
    """The contract every candidate follows (see the module docstring)."""

    name: str

    def fit_views(self, views: Views, y: np.ndarray, multi_label: bool) -> LabellingMethod: ...

    def state(self, views: Views) -> dict[str, np.ndarray]: ...

    def select(self, state: dict[str, np.ndarray], y: np.ndarray, metric: str) -> dict[str, Any]: ...

    def decide(self, state: dict[str, np.ndarray], settings: dict[str, Any]) -> np.ndarray: ...

    def proba(self, state: dict[str, np.ndarray], settings: dict[str, Any]) -> np.ndarray: ...

    def keep(self, settings: dict[str, Any]) -> None:
        """Drop what the chosen settings do not use before the method is stored (a no-op for most)."""
        return None  # a real default (not `...`), which the methods that subclass the Protocol inherit

    def to_files(self) -> MethodParts: ...


@dataclass(frozen=True)
class MethodSpec:
    """One registered method.

    ``rank`` orders the candidates: ties in `auto` go to the lower rank (the cheaper method), and help lists
    them in that order. ``kind`` "trained" methods move the encoder itself: auto scores them only within
    ``--budget`` and on ``--valid``. ``uses_descriptions``: the method reads the labels' descriptions (auto
    offers it only for an index that has them); ``min_rows`` 0: it labels with no rows at all. ``in_auto``
    False keeps a method out of auto's default list (it can still be named with ``--method``). ``load`` is
    None for a method whose state lives in the index itself (knn keeps its k and m in meta.json); otherwise it
    rebuilds the method from its :class:`MethodParts` and labels."""

    name: str
    summary: str
    factory: Callable[[MethodContext], LabellingMethod]
    load: Callable[[MethodParts, list[str]], LabellingMethod] | None = None
    kind: Kind = "fast"
    rank: int = 100
    in_auto: bool = True
    uses_descriptions: bool = False
    min_rows: int = 1
    bench: Literal["index", "own", "none"] = "index"  # how `bench slices` runs it (own: a benchmark class)


_SPECS: dict[str, MethodSpec] = {}
_LOADED = False


def register(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Add ``spec`` to the registry (a second spec of the same name is refused unless ``replace``)."""
    if spec.name in ("auto", "") or not spec.name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"a method needs a plain name other than 'auto', got {spec.name!r}")
    if spec.name in _SPECS and not replace and _SPECS[spec.name] is not spec:
        raise ValueError(f"method '{spec.name}' is already registered")
    _SPECS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a method (tests register toy methods and take them away again)."""
    _SPECS.pop(name, None)


def _load_builtins() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(entry.value.split(":")[0])


def registered() -> list[MethodSpec]:
    """Every registered method, cheapest first."""
    _load_builtins()
    return sorted(_SPECS.values(), key=lambda s: (s.rank, s.name))


def get_spec(name: str) -> MethodSpec:
    _load_builtins()
    try:
        return _SPECS[name]
    except KeyError:
        raise InvalidArgumentError(f"unknown method '{name}'; choose from {', '.join(method_choices())}") from None


def candidate_names(descriptions: bool = False) -> tuple[str, ...]:
    """The fast methods `auto` scores by default, tie order first; those that read label descriptions only when
    the index has ``descriptions``."""
    return tuple(s.name for s in registered() if s.kind == "fast" and s.in_auto
                 and (descriptions or not s.uses_descriptions))


def trained_names() -> tuple[str, ...]:
    """The trained heads (SetFit, fine-tuning): scored by auto only within a time budget."""
    return tuple(s.name for s in registered() if s.kind == "trained")


def stored_names() -> tuple[str, ...]:
    """The methods whose fitted state is saved in the index's ``method/`` folder."""
    return tuple(s.name for s in registered() if s.load is not None)


def method_choices() -> tuple[str, ...]:
    """What ``--method`` accepts: auto, then every registered method."""
    return ("auto", *(s.name for s in registered()))


def method_help() -> str:
    """The ``--method`` help text, one clause per registered method."""
    described = [n for n in candidate_names(True) if n not in candidate_names()]
    parts = [f"how the index labels. auto (default) scores {', '.join(candidate_names())}"
             + (f" (and, with --label-names, {', '.join(described)})" if described else "")
             + " on --valid (or by repeated stratified cross-validation on the training rows when there is no "
             "--valid) and keeps the best by --metric"]
    parts += [f"{s.name}: {s.summary}" for s in registered()]
    return "; ".join(parts)


def make_candidate(name: str, context: MethodContext | None = None) -> LabellingMethod:
    """A fresh, unfitted candidate of the registered method ``name``."""
    spec = get_spec(name)
    context = context or MethodContext()
    if spec.kind == "trained" and name not in context.trained:
        raise InvalidArgumentError(f"method '{name}' trains a model: it needs a trainer and a time budget "
                            "(`--budget MINUTES`)")
    return spec.factory(context)
