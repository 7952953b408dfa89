"""The methods a slice benchmark compares, behind one small contract.

``fit(train, dev, task)`` learns from a training slice and makes every tunable choice on ``dev`` only;
``predict(texts)`` answers for test *texts*: a method never receives test labels (the runner keeps them and
scores), so a test label cannot reach a tuner. ``predict`` returns an (n, L) boolean matrix in
``task.labels`` order. A ``constant`` method (zero-shot) ignores the slice and runs once per benchmark."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from fewlabel.indexing.augment import Augmenter
from fewlabel.indexing.encoders.cache import EmbeddingCache
from fewlabel.indexing.readers import Row, label_matrix

if TYPE_CHECKING:
    from fewlabel.indexing.encoders.encoder import Encoder

__all__ = ["AugmentedMethod", "FineTuneMethod", "IndexMethod", "KNNMethod", "NaiveBayesMethod",
           "SetFitMethod", "Task", "ZeroShotMethod", "make_methods", "method_names"]


def method_names() -> tuple[str, ...]:
    """What ``--methods`` accepts: the benchmark's own zero-shot baseline, every method of the index's registry
    (:mod:`fewlabel.retrieval.methods.registry`, so a newly registered method is benchmarked with no edit here)
    and auto."""
    from fewlabel.retrieval.methods.registry import registered

    fast = [s.name for s in registered() if s.kind == "fast" and s.name != "zeroshot"]  # the baseline below
    trained = [s.name for s in registered() if s.kind == "trained"]
    return ("zeroshot", *fast, "auto", *trained)


@dataclass
class Task:
    """What every method is told besides the rows."""

    labels: list[str]
    multi_label: bool
    seed: int = 0
    batch_size: int = 64
    cache: EmbeddingCache | None = None
    device: str | None = None
    backend: str | None = None  # the encoder's (--backend)
    settings: dict = field(default_factory=dict)


class NaiveBayesMethod:
    """The book's baseline, :class:`fewlabel.retrieval.methods.nb.NaiveBayesText` (the index's ``nb`` method, the
    same code): CountVectorizer + MultinomialNB (one-vs-rest for multi-label), on character 1-3-grams when the
    training text is mostly Korean, words otherwise. Nothing is tuned."""

    constant = False

    def __init__(self, analyzer: str = "auto") -> None:
        self.analyzer = analyzer
        self.name = "nb"

    def fit(self, train: list[Row], dev: list[Row], task: Task) -> dict:
        from fewlabel.retrieval.methods.nb import NaiveBayesText

        self.model_ = NaiveBayesText(self.analyzer).fit([r.text for r in train],
                                                        label_matrix(train, task.labels, "train slice"),
                                                        task.multi_label)
        return {"analyzer": self.model_.analyzer_}

    def predict(self, texts: list[str]) -> np.ndarray:
        return self.model_.predict(texts)


class IndexMethod:
    """An index method on one encoder's embeddings (:mod:`fewlabel.retrieval.methods`): ``linear``,
    ``ensemble``, or ``auto``, which scores knn, linear, nb and ensemble on dev (settings chosen on one half,
    scored on the other) and keeps the best, exactly as ``fewlabel index build --method auto --valid`` does."""

    constant = False

    def __init__(self, method: str, encoder: str, label_spec: str | None = None, template: str | None = None) -> None:
        self.method, self.encoder_name = method, encoder
        self.name = f"{method}:{encoder}"
        self._encoder: Encoder | None = None
        self.label_spec, self.template = label_spec, template  # descriptions for prior (and auto's zeroshot)

    def _views(self, texts: list[str]):
        from fewlabel.indexing.encoders.cache import encode_with_cache
        from fewlabel.retrieval.methods.common import Views

        assert self._encoder is not None  # fit loads it first
        vectors = encode_with_cache(self._encoder, list(texts), self.task_.cache, batch_size=self.task_.batch_size)
        return Views(vectors, list(texts))

    def fit(self, train: list[Row], dev: list[Row], task: Task) -> dict:
        from fewlabel.indexing.encoders.encoder import Encoder
        from fewlabel.retrieval.methods.auto import select_method
        from fewlabel.retrieval.methods.registry import candidate_names

        if self._encoder is None:
            self._encoder = Encoder(self.encoder_name, device=task.device, backend=task.backend)
        self.task_ = task
        descriptions = None
        if self.label_spec or self.method == "prior":  # the labels described (by their names when not given)
            from fewlabel.retrieval.methods.descriptions import describe_labels, embed_descriptions

            described = describe_labels(self.label_spec or list(task.labels), self.template)
            given = {name: described["labels"].get(name, [name]) for name in task.labels}
            descriptions = embed_descriptions(given, described["template"], self._encoder, task.cache)
        names = list(candidate_names(descriptions is not None)) if self.method == "auto" else [self.method]
        choice = select_method(self._views([r.text for r in train]), label_matrix(train, task.labels, "train slice"),
                               multi_label=task.multi_label, valid=self._views([r.text for r in dev]),
                               y_valid=label_matrix(dev, task.labels, "dev"), methods=names, metric="micro",
                               seed=task.seed, descriptions=descriptions)
        self.candidate_, self.settings_ = choice.candidate, choice.settings
        info = {"chosen": choice.method, "settings": {k: v for k, v in choice.settings.items() if k != "thresholds"}}
        if self.method == "auto":
            info["leaderboard"] = {e["method"]: round(e["score"], 4) for e in choice.leaderboard}
        return info

    def predict(self, texts: list[str]) -> np.ndarray:
        state = self.candidate_.state(self._views(texts))
        return self.candidate_.decide(state, self.settings_)


class KNNMethod:
    """A FAISS label index of the slice; k and m tuned on dev (micro-F1) with the labels the slice has."""

    constant = False

    def __init__(self, encoder: str) -> None:
        self.encoder_name = encoder
        self.name = f"knn:{encoder}"
        self._encoder: Encoder | None = None

    def fit(self, train: list[Row], dev: list[Row], task: Task) -> dict:
        from fewlabel.indexing.encoders.encoder import Encoder
        from fewlabel.indexing.store.label_index import LabelIndex
        from fewlabel.retrieval.knn.saved_index import tune_index

        if self._encoder is None:
            self._encoder = Encoder(self.encoder_name, device=task.device, backend=task.backend)
        self.task_ = task
        self.index_ = LabelIndex.build(train, self._encoder, multi_label=task.multi_label, cache=task.cache,
                                       batch_size=task.batch_size)
        known = set(self.index_.label_names)
        tune_rows = [Row(r.text, tuple(lab for lab in r.labels if lab in known), r.id, r.line) for r in dev]
        tune_rows = [r for r in tune_rows if r.labels]
        result = tune_index(self.index_, self._encoder, tune_rows, metric="micro", source="dev", cache=task.cache,
                            batch_size=task.batch_size)
        return {"k": result.k, "m": result.m, "dev_micro_f1": round(result.score, 4)}

    def predict(self, texts: list[str]) -> np.ndarray:
        from fewlabel.retrieval.router import predict_rows

        rows = [Row(t, (), str(i), i + 1) for i, t in enumerate(texts)]
        predictions = predict_rows(self.index_, self._encoder, rows, cache=self.task_.cache,
                                   batch_size=self.task_.batch_size)
        return label_matrix([p.labels for p in predictions], self.task_.labels, "predictions")


class ZeroShotMethod:
    """No training rows: NLI or embedding zero-shot over the label descriptions. Multi-label: the threshold is
    tuned on dev (micro-F1); single-label: the top label. Constant across slices."""

    constant = True
    thresholds = [round(t, 2) for t in np.linspace(0.05, 0.95, 19)]

    def __init__(self, model: str = "embed", *, encoder: str = "e5-small", label_spec: str | None = None,
                 template: str | None = None) -> None:
        self.model, self.encoder_name, self.label_spec, self.template = model, encoder, label_spec, template
        self.name = "zeroshot"

    def _scorer(self, task: Task):
        from fewlabel.retrieval.zeroshot.labels import parse_labels
        from fewlabel.retrieval.zeroshot.scorers import load_zero_shot

        labels = parse_labels(self.label_spec) if self.label_spec else parse_labels(task.labels)
        if list(labels.names) != list(task.labels):
            missing = sorted(set(task.labels) - set(labels.names))
            raise ValueError(f"the zero-shot label descriptions must name every label in order {task.labels}; "
                             f"missing: {missing}")
        scorer = load_zero_shot(self.model, encoder=self.encoder_name, labels=labels, template=self.template,
                                multi_label=task.multi_label, batch_size=task.batch_size, cache=task.cache,
                                device=task.device)
        return scorer

    def fit(self, train: list[Row], dev: list[Row], task: Task) -> dict:
        from sklearn.metrics import f1_score

        from fewlabel.retrieval.zeroshot.probabilities import select_labels

        self.task_ = task
        self.scorer_ = self._scorer(task)
        info = {"model": self.model if self.model != "embed" else f"embed ({self.encoder_name})",
                "template": self.scorer_.template}
        self.threshold_ = None
        if task.multi_label:
            scores = self.scorer_.scores([r.text for r in dev])
            y = label_matrix(dev, task.labels, "dev")
            grid = (self.thresholds if self.model != "embed"
                    else [round(float(t), 4) for t in np.quantile(scores, np.linspace(0.05, 0.95, 19))])
            f1 = [f1_score(y, select_labels(scores, threshold=t), average="micro", zero_division=0) for t in grid]
            self.threshold_ = grid[int(np.argmax(f1))]
            info.update(threshold=self.threshold_, dev_micro_f1=round(float(max(f1)), 4))
        return info

    def predict(self, texts: list[str]) -> np.ndarray:
        from fewlabel.retrieval.zeroshot.probabilities import select_labels

        scores = self.scorer_.scores(list(texts))
        if self.task_.multi_label:
            return select_labels(scores, threshold=self.threshold_)
        return select_labels(scores, top_k=1)


class _TrainedHeadMethod:
    """Shared by SetFit and fine-tuning: a trained model with ``predict_proba`` over texts. Multi-label: the
    probability a label needs is tuned on dev (micro-F1), since a head trained on 8 rows rarely reaches 0.5
    for any label; single-label: the top label."""

    constant = False
    thresholds = ZeroShotMethod.thresholds
    max_rows: int | None = None
    task_: Task  # set by the subclass's fit
    model_: Any  # a SetFitClassifier or a TextClassifier, set by the subclass's fit

    def capped(self, train: list[Row], task: Task) -> list[Row]:
        """At most ``max_rows`` rows of the slice (a stratified subset, seeded): within a step budget the
        model never sees more, and SetFit's head would otherwise embed the whole pool."""
        if not self.max_rows or len(train) <= self.max_rows:
            return train
        from fewlabel.benchmarks.slices.sampling import stratified_subset

        keep = stratified_subset(label_matrix(train, task.labels, "train slice"), self.max_rows, task.seed)
        return [train[i] for i in keep]

    def tune_threshold(self, dev: list[Row]) -> dict:
        from sklearn.metrics import f1_score

        self.threshold_ = 0.5
        if not self.task_.multi_label or not dev:
            return {}
        probs = self.model_.predict_proba([r.text for r in dev], batch_size=self.task_.batch_size)
        y = label_matrix(dev, self.task_.labels, "dev")
        f1 = [f1_score(y, probs >= t, average="micro", zero_division=0) for t in self.thresholds]
        self.threshold_ = self.thresholds[int(np.argmax(f1))]
        return {"threshold": self.threshold_, "dev_micro_f1": round(float(max(f1)), 4)}

    def predict(self, texts: list[str]) -> np.ndarray:
        return self.model_.predict(list(texts), threshold=self.threshold_, batch_size=self.task_.batch_size)


class SetFitMethod(_TrainedHeadMethod):
    """SetFit on ``body`` (:mod:`fewlabel.finetune.classify.setfit`) with the paper's recipe: ``num_iterations`` pairs
    per text, one epoch, at most ``max_steps`` steps; a fixed recipe, so nothing is chosen and dev is not used (setfit's
    own dev evaluation scores pair losses and would cost more than training at these sizes)."""

    def __init__(self, body: str, *, max_steps: int = 200, num_iterations: int = 20,
                 max_rows: int | None = None) -> None:
        self.body, self.max_steps, self.num_iterations, self.max_rows = body, max_steps, num_iterations, max_rows
        self.name = f"setfit:{body}"

    def fit(self, train: list[Row], dev: list[Row], task: Task) -> dict:
        from fewlabel.finetune.classify.setfit import train_setfit

        self.task_ = task
        train = self.capped(train, task)
        self.model_ = train_setfit([r.text for r in train], [r.labels for r in train], task.labels, self.body,
                                   multi_label=task.multi_label, num_iterations=self.num_iterations,
                                   max_steps=self.max_steps, seed=task.seed, device=task.device)
        return {**self.model_.info, "trained_rows": len(train), **self.tune_threshold(dev)}


class FineTuneMethod(_TrainedHeadMethod):
    """A classification head fine-tuned with its body (:mod:`fewlabel.finetune.classify.transformer`); the checkpoint is
    chosen on dev micro-F1."""

    def __init__(self, body: str, *, max_steps: int = 200, epochs: float = 20, max_rows: int | None = None) -> None:
        self.body, self.max_steps, self.epochs, self.max_rows = body, max_steps, epochs, max_rows
        self.name = f"finetune:{body}"

    def fit(self, train: list[Row], dev: list[Row], task: Task) -> dict:
        from fewlabel.finetune.classify.transformer import CLASSIFIER_SETTINGS, fine_tune_classifier
        from fewlabel.finetune.settings import RunOptions

        self.task_ = task
        train = self.capped(train, task)
        settings = replace(CLASSIFIER_SETTINGS, epochs=self.epochs, max_steps=self.max_steps, seed=task.seed)
        self.model_ = fine_tune_classifier([r.text for r in train], [r.labels for r in train], task.labels,
                                           self.body, settings, multi_label=task.multi_label,
                                           dev_texts=[r.text for r in dev], dev_labels=[r.labels for r in dev],
                                           run=RunOptions(device=task.device, show_progress=False), evals=4)
        return {**self.model_.info, "trained_rows": len(train), **self.tune_threshold(dev)}


class AugmentedMethod:
    """A trainable method fitted on its slice plus label-preserving copies of the slice's rows
    (:class:`fewlabel.indexing.augment.Augmenter`); dev and test are never augmented. It shares the plain method's
    object (and so its loaded encoder or body): the runner fits and predicts one unit at a time. Named
    ``<method>+<augmentation>``, e.g. ``nb+eda``."""

    constant = False

    def __init__(self, method, augmenter: Augmenter) -> None:
        self.method, self.augmenter = method, augmenter
        self.name = f"{method.name}+{augmenter.name}"

    def fit(self, train: list[Row], dev: list[Row], task: Task) -> dict:
        augmented = self.augmenter.augment(train)
        info = self.method.fit(augmented, dev, task)
        return {**(info or {}), "augmented_rows": len(augmented)}

    def predict(self, texts: list[str]) -> np.ndarray:
        return self.method.predict(texts)


def make_methods(names: list[str], *, encoders: list[str], bodies: list[str], nb_analyzer: str = "auto",
                 zeroshot_model: str = "embed", zeroshot_encoder: str = "e5-small", zeroshot_labels: str | None = None,
                 zeroshot_template: str | None = None, max_steps: int = 200, setfit_iterations: int = 20,
                 finetune_epochs: float = 20, fit_max_rows: int | None = None,
                 augmenter: Augmenter | None = None) -> list:
    """Method objects for ``names`` (a subset of :func:`method_names`): ``knn`` once per encoder, ``setfit``
    and ``finetune`` once per body. With an ``augmenter`` each trainable method also runs on the augmented slice
    (:class:`AugmentedMethod`), so the report shows it with and without augmentation."""
    out = _plain_methods(names, encoders=encoders, bodies=bodies, nb_analyzer=nb_analyzer,
                         zeroshot_model=zeroshot_model, zeroshot_encoder=zeroshot_encoder,
                         zeroshot_labels=zeroshot_labels, zeroshot_template=zeroshot_template, max_steps=max_steps,
                         setfit_iterations=setfit_iterations, finetune_epochs=finetune_epochs,
                         fit_max_rows=fit_max_rows)
    if augmenter is None:
        return out
    return [twin for m in out for twin in ([m] if m.constant else [m, AugmentedMethod(m, augmenter)])]


def _plain_methods(names: list[str], *, encoders: list[str], bodies: list[str], nb_analyzer: str,
                   zeroshot_model: str, zeroshot_encoder: str, zeroshot_labels: str | None,
                   zeroshot_template: str | None, max_steps: int, setfit_iterations: int, finetune_epochs: float,
                   fit_max_rows: int | None) -> list:
    known = method_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    out: list = []
    for name in names:
        if name == "nb":
            out.append(NaiveBayesMethod(nb_analyzer))
        elif name == "zeroshot":
            out.append(ZeroShotMethod(zeroshot_model, encoder=zeroshot_encoder, label_spec=zeroshot_labels,
                                      template=zeroshot_template))
        elif name == "knn":
            out += [KNNMethod(e) for e in encoders]
        elif name == "setfit":
            out += [SetFitMethod(b, max_steps=max_steps, num_iterations=setfit_iterations, max_rows=fit_max_rows)
                    for b in bodies]
        elif name == "finetune":
            out += [FineTuneMethod(b, max_steps=max_steps, epochs=finetune_epochs, max_rows=fit_max_rows)
                    for b in bodies]
        else:  # auto, or any registered method on the embeddings (linear, ensemble, prior, a new one)
            out += [IndexMethod(name, e, zeroshot_labels, zeroshot_template) for e in encoders]
    return out
