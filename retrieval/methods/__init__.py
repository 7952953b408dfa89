"""The methods an index can label with, and `auto`, which chooses among them on validation data.

Candidates (all on the index's own rows): ``knn`` (the vote, tuned k and m), ``linear`` (logistic regression
on the frozen embeddings), ``nb`` (word or character n-gram Naive Bayes, by the script of the text) and
``ensemble`` (both views blended); with label descriptions also ``zeroshot`` (the nearest description) and
``prior`` (the descriptions as a prior that the rows overrule, see :mod:`.prior`).
`fit_method` chooses and stores one in a `LabelIndex`; `load_method` reads it back for the router;
`select_method` is the choice itself on arrays.

Every method is registered in :mod:`fewlabel.retrieval.methods.registry` (one Protocol, one list): adding one
is a file plus its registration, and auto, the store, the CLI's help and the benchmarks all see it."""

from typing import TYPE_CHECKING

from fewlabel.indexing.lazy import lazy_exports

_EXPORTS = {
    "LabellingMethod": "fewlabel.retrieval.methods.registry",
    "MethodSpec": "fewlabel.retrieval.methods.registry",
    "MethodParts": "fewlabel.retrieval.methods.registry",
    "MethodContext": "fewlabel.retrieval.methods.registry",
    "register": "fewlabel.retrieval.methods.registry",
    "registered": "fewlabel.retrieval.methods.registry",
    "candidate_names": "fewlabel.retrieval.methods.registry",
    "method_choices": "fewlabel.retrieval.methods.registry",
    "make_candidate": "fewlabel.retrieval.methods.registry",
    "select_method": "fewlabel.retrieval.methods.auto",
    "cv_plan": "fewlabel.retrieval.methods.auto",
    "Views": "fewlabel.retrieval.methods.common",
    "LinearHead": "fewlabel.retrieval.methods.linear",
    "NaiveBayesText": "fewlabel.retrieval.methods.nb",
    "EnsembleHead": "fewlabel.retrieval.methods.ensemble",
    "KNNCandidate": "fewlabel.retrieval.methods.knn",
    "fit_method": "fewlabel.retrieval.methods.index_method",
    "build_index": "fewlabel.retrieval.methods.index_method",
    "load_method": "fewlabel.retrieval.methods.store",
    "describe_labels": "fewlabel.retrieval.methods.descriptions",
    "LabelPrior": "fewlabel.retrieval.methods.prior",
    "ZeroShotCandidate": "fewlabel.retrieval.methods.zeroshot",
}

if TYPE_CHECKING:  # the real types for checkers and IDEs; at run time the names stay lazy
    from fewlabel.retrieval.methods.auto import cv_plan as cv_plan, select_method as select_method
    from fewlabel.retrieval.methods.common import Views as Views
    from fewlabel.retrieval.methods.descriptions import describe_labels as describe_labels
    from fewlabel.retrieval.methods.ensemble import EnsembleHead as EnsembleHead
    from fewlabel.retrieval.methods.index_method import build_index as build_index, fit_method as fit_method
    from fewlabel.retrieval.methods.knn import KNNCandidate as KNNCandidate
    from fewlabel.retrieval.methods.linear import LinearHead as LinearHead
    from fewlabel.retrieval.methods.nb import NaiveBayesText as NaiveBayesText
    from fewlabel.retrieval.methods.prior import LabelPrior as LabelPrior
    from fewlabel.retrieval.methods.registry import (
        LabellingMethod as LabellingMethod,
        MethodContext as MethodContext,
        MethodParts as MethodParts,
        MethodSpec as MethodSpec,
        candidate_names as candidate_names,
        make_candidate as make_candidate,
        method_choices as method_choices,
        register as register,
        registered as registered,
    )
    from fewlabel.retrieval.methods.store import load_method as load_method
    from fewlabel.retrieval.methods.zeroshot import ZeroShotCandidate as ZeroShotCandidate

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
