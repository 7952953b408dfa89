"""fewlabel.retrieval: labelling and scoring with what `indexing` stores.

The kNN vote (`KNNLabeler`, scikit-learn style), the router that adds the zero-shot fallback (`Predictor`),
the zero-shot scorers, STS scoring, relation classifiers, the prediction writers, and the `fewlabel` CLI.

    from fewlabel.retrieval import Predictor
    Predictor.load("my-index").predict(["a new text"])

The names below load on first use (nothing heavy is imported with the package)."""

from typing import TYPE_CHECKING

from fewlabel.indexing.lazy import lazy_exports

_EXPORTS = {
    # kNN
    "KNNLabeler": "fewlabel.retrieval.knn.estimator",
    "tune_k_m": "fewlabel.retrieval.knn.tuning",
    "tune_index": "fewlabel.retrieval.knn.saved_index",
    "resolve_k_m": "fewlabel.retrieval.knn.saved_index",
    "evaluate": "fewlabel.retrieval.knn.saved_index",
    # the index's method: auto chooses among knn, linear, nb and ensemble (and zeroshot, prior with descriptions)
    "build_index": "fewlabel.retrieval.methods.index_method",
    "describe_labels": "fewlabel.retrieval.methods.descriptions",
    "fit_method": "fewlabel.retrieval.methods.index_method",
    "select_method": "fewlabel.retrieval.methods.auto",
    "load_method": "fewlabel.retrieval.methods.store",
    # the router: kNN with or without the zero-shot fallback
    "Predictor": "fewlabel.retrieval.router",
    "predict_rows": "fewlabel.retrieval.router",
    "Prediction": "fewlabel.retrieval.outputs",
    "write_predictions": "fewlabel.retrieval.outputs",
    # zero-shot
    "NLIZeroShot": "fewlabel.retrieval.zeroshot.scorers",
    "EmbeddingZeroShot": "fewlabel.retrieval.zeroshot.scorers",
    "LabelSet": "fewlabel.retrieval.zeroshot.labels",
    "parse_labels": "fewlabel.retrieval.zeroshot.labels",
    "load_zero_shot": "fewlabel.retrieval.zeroshot.scorers",
    # STS and relations
    "STSScorer": "fewlabel.retrieval.sts.scorer",
    "Calibration": "fewlabel.retrieval.sts.scorer",
    "RelationClassifier": "fewlabel.retrieval.relation.classifier",
    "RelationKNN": "fewlabel.retrieval.relation.fewshot",
}

if TYPE_CHECKING:  # the real types for checkers and IDEs; at run time the names stay lazy
    from fewlabel.retrieval.knn.estimator import KNNLabeler as KNNLabeler
    from fewlabel.retrieval.knn.saved_index import (
        evaluate as evaluate,
        resolve_k_m as resolve_k_m,
        tune_index as tune_index,
    )
    from fewlabel.retrieval.knn.tuning import tune_k_m as tune_k_m
    from fewlabel.retrieval.methods.auto import select_method as select_method
    from fewlabel.retrieval.methods.descriptions import describe_labels as describe_labels
    from fewlabel.retrieval.methods.index_method import build_index as build_index, fit_method as fit_method
    from fewlabel.retrieval.methods.store import load_method as load_method
    from fewlabel.retrieval.outputs import Prediction as Prediction, write_predictions as write_predictions
    from fewlabel.retrieval.relation.classifier import RelationClassifier as RelationClassifier
    from fewlabel.retrieval.relation.fewshot import RelationKNN as RelationKNN
    from fewlabel.retrieval.router import Predictor as Predictor, predict_rows as predict_rows
    from fewlabel.retrieval.sts.scorer import Calibration as Calibration, STSScorer as STSScorer
    from fewlabel.retrieval.zeroshot.labels import LabelSet as LabelSet, parse_labels as parse_labels
    from fewlabel.retrieval.zeroshot.scorers import (
        EmbeddingZeroShot as EmbeddingZeroShot,
        NLIZeroShot as NLIZeroShot,
        load_zero_shot as load_zero_shot,
    )

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
