"""fewlabel.retrieval: labelling and scoring with what `indexing` stores.

The kNN vote (`KNNLabeler`, scikit-learn style), the router that adds the zero-shot fallback (`Predictor`),
the zero-shot scorers, STS scoring, relation classifiers, the prediction writers, and the `fewlabel` CLI.

    from fewlabel.retrieval import Predictor
    Predictor.load("my-index").predict(["a new text"])

The names below load on first use (nothing heavy is imported with the package)."""

from fewlabel.indexing.lazy import lazy_exports

_EXPORTS = {
    # kNN
    "KNNLabeler": "fewlabel.retrieval.knn.estimator",
    "tune_k_m": "fewlabel.retrieval.knn.tuning",
    "tune_index": "fewlabel.retrieval.knn.saved_index",
    "resolve_k_m": "fewlabel.retrieval.knn.saved_index",
    "evaluate": "fewlabel.retrieval.knn.saved_index",
    # the index's method: auto chooses among knn, linear, nb and ensemble
    "build_index": "fewlabel.retrieval.methods.index_method",
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
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
