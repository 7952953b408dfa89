"""Train a relation classifier (KLUE-RE, SemEval-2010 Task 8, or any label list) with sentence-transformers'
``CrossEncoder`` and ``CrossEncoderTrainer`` (no hand-written loop).

Each row is rendered by :mod:`fewlabel.indexing.relation.render` (``baseline``, ``entity`` or ``typed`` markers, the
default) into a pair of texts, and a ``CrossEncoder`` with ``len(labels)`` outputs classifies the pair. Two
heads (``pooling``):

- ``cls``: the first token's vector (``[CLS]`` / ``<s>``), the sequence-classification head of transformers;
- ``entity-start``: the first token's vector concatenated with the vectors of the subject's and the object's
  opening markers (:class:`fewlabel.indexing.relation.pooling.EntityStartPooling`) and one linear layer to the labels, a
  modular ``CrossEncoder`` (``Transformer`` -> pooling -> ``Dense``). It needs a marker rendering.

With ``marker="entity"`` the four markers ``[E1] [/E1] [E2] [/E2]`` are added to the tokenizer as special
tokens (new embedding rows, saved with the model).

The loss (:func:`relation_loss`) follows the trainers' custom-loss contract (an ``nn.Module`` taking
``(inputs, labels)``):

- ``ce``: cross-entropy (``torch.nn.functional.cross_entropy``);
- ``weighted``: cross-entropy with "balanced" class weights, ``n / (classes present * count of the class)``;
- ``focal``: focal loss ``(1 - p_t)^gamma * CE`` (Lin et al., 2017), ``focal_gamma`` default 2;
- ``label_smoothing`` (0-1) applies to all three.

With dev rows, a ``RelationEvaluator`` (:func:`relation_evaluator`) measures KLUE's micro-F1 (without the
no-relation class), AUPRC and, for SemEval labels, the official macro-F1 every epoch, and the epoch with the
best micro-F1 is kept (``load_best_model_at_end``). Test rows, when given, are scored once at the end.

The output folder holds the model (``save_pretrained``; ``id2label`` in ``config.json`` is the label list in
order), ``README.md`` (a model card), ``scores.json``, ``training_log.jsonl`` and ``fewlabel_model.json``
(``{"kind": "re-cross-encoder", "labels": [...], "marker": ..., ...}``), written last: a folder without it is
unfinished. Checkpoints go to ``OUT/checkpoints``; a later run with the same data and settings resumes there.
Use the folder with ``fewlabel re predict`` or :class:`fewlabel.retrieval.relation.classifier.RelationClassifier`.
The job itself (checks, resume, record, card) is :class:`fewlabel.finetune.heads.HeadTrainer`'s; the options of
the rendering and the loss are one :class:`RelationOptions`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fewlabel.finetune.heads import HeadTrainer, Job
from fewlabel.finetune.model_card import percent
from fewlabel.finetune.runs import transformers_model
from fewlabel.finetune.settings import RunOptions, TrainSettings
from fewlabel.indexing.errors import InvalidArgumentError, ModelError
from fewlabel.indexing.hf import pick_device
from fewlabel.indexing.model_folder import RE_KIND
from fewlabel.indexing.relation.data import RelationRow, label_counts, no_relation_label
from fewlabel.indexing.relation.metrics import relation_metrics
from fewlabel.indexing.relation.render import ENTITY_MARKERS, TYPE_LANGUAGES, check_marker, render_rows

__all__ = ["LOSSES", "POOLINGS", "RE_SETTINGS", "RelationHead", "RelationOptions", "class_weights", "predict_probs",
           "relation_evaluator", "relation_loss", "train_re_classifier"]

LOSSES = ("ce", "weighted", "focal")
POOLINGS = ("cls", "entity-start")
#: The opening marker of the subject and of the object in each marker rendering (entity-start pooling).
OPENING_MARKERS = {"typed": ("@", "#"), "entity": (ENTITY_MARKERS[0], ENTITY_MARKERS[2])}
DEV_NAME = "re-dev"
PRIMARY = "micro_f1"
#: A relation classifier's default training settings (more epochs and a higher rate than the other heads).
RE_SETTINGS = TrainSettings(epochs=3, lr=3e-5)


@dataclass(frozen=True)
class RelationOptions:
    """How rows are rendered and classified, and the loss: ``marker`` (``baseline``, ``entity``, ``typed``),
    ``type_language`` of typed markers, ``loss`` (``ce``, ``weighted``, ``focal``; ``focal_gamma`` for focal),
    ``label_smoothing`` (0-1), ``no_relation`` (the class left out of micro-F1; default ``no_relation`` or
    ``Other`` when the label list has one) and ``pooling`` (``cls`` or ``entity-start``). Checked when made."""

    marker: str = "typed"
    type_language: str = "auto"
    loss: str = "ce"
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0
    no_relation: str | None = None
    pooling: str = "cls"

    def __post_init__(self) -> None:
        check_marker(self.marker)
        if self.type_language not in TYPE_LANGUAGES:
            raise InvalidArgumentError(
                f"type language must be one of {', '.join(TYPE_LANGUAGES)}, got {self.type_language!r}")
        if self.loss not in LOSSES:
            raise InvalidArgumentError(f"unknown loss '{self.loss}'; choose one of {', '.join(LOSSES)}")
        if self.pooling not in POOLINGS:
            raise InvalidArgumentError(f"unknown pooling '{self.pooling}'; choose one of {', '.join(POOLINGS)}")
        if self.pooling == "entity-start" and self.marker not in OPENING_MARKERS:
            raise InvalidArgumentError(
                f"entity-start pooling needs entity markers in the text; the '{self.marker}' rendering "
                                f"has none (use --marker {' or '.join(OPENING_MARKERS)})")
        if not 0 <= self.label_smoothing < 1:
            raise InvalidArgumentError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.loss == "focal" and not self.focal_gamma > 0:
            raise InvalidArgumentError(f"focal gamma must be > 0, got {self.focal_gamma}")

    def record(self, labels: list[str]) -> dict:
        """The options as the run and marker records hold them: the no-relation class resolved against ``labels``
        and ``focal_gamma`` only for focal loss."""
        none = self.no_relation if self.no_relation is not None else no_relation_label(labels)
        if none is not None and none not in labels:
            raise InvalidArgumentError(f"the no-relation class '{none}' is not in the label list")
        return {"marker": self.marker, "type_language": self.type_language, "loss": self.loss,
                "focal_gamma": self.focal_gamma if self.loss == "focal" else None,
                "label_smoothing": self.label_smoothing, "no_relation": none, "pooling": self.pooling}


def train_re_classifier(train_rows: Sequence[RelationRow], dev_rows: Sequence[RelationRow] | None,
                        labels: Sequence[str], base: str, out_dir: str | Path,
                        settings: TrainSettings = RE_SETTINGS, options: RelationOptions | None = None, *,
                        test_rows: Sequence[RelationRow] | None = None, run: RunOptions | None = None,
                        sources: dict[str, str] | None = None) -> dict:
    """Fine-tune a relation classifier on ``base`` (registry name or folder) and save it to ``out_dir``.

    ``labels`` is the label list in order (KLUE's ``relation_list.json``). Returns a summary: output folder, dev
    and test scores, steps, seconds, where it resumed from."""
    head = RelationHead(labels, options or RelationOptions(), settings, run or RunOptions())
    return head.train(train_rows, dev_rows, base, out_dir, test=test_rows, sources=sources)


# ---- the loss ------------------------------------------------------------------------------------------
def class_weights(rows: Sequence[RelationRow], labels: Sequence[str]) -> list[float]:
    """"Balanced" weights: ``n / (classes present * count)``; a class absent from training gets 1."""
    counts = label_counts(rows)
    present = [c for c in labels if counts.get(c)]
    n = sum(counts.get(c, 0) for c in labels)
    return [n / (len(present) * counts[c]) if counts.get(c) else 1.0 for c in labels]


def relation_loss(model, *, weight: Sequence[float] | None = None, label_smoothing: float = 0.0,
                  focal_gamma: float = 0.0):
    """Cross-entropy (optionally class-weighted and label-smoothed) or, with ``focal_gamma`` > 0, focal loss,
    as a loss module for ``CrossEncoderTrainer``."""
    return _loss_class()(model, weight=weight, label_smoothing=label_smoothing, focal_gamma=focal_gamma)


def _loss_class():
    import torch
    from torch import nn
    from torch.nn import functional as F

    class RelationLoss(nn.Module):
        def __init__(self, model, *, weight, label_smoothing: float, focal_gamma: float) -> None:
            super().__init__()
            self.model = model
            self.label_smoothing = float(label_smoothing)
            self.focal_gamma = float(focal_gamma)
            self.weight: torch.Tensor | None  # a buffer: moves with the module
            self.register_buffer("weight", None if weight is None else torch.tensor(list(weight), dtype=torch.float))

        def forward(self, inputs, labels, prompt=None, task=None):
            from sentence_transformers.util import batch_to_device

            features = self.model.preprocess(list(zip(inputs[0], inputs[1], strict=True)), prompt=prompt, task=task)
            logits = self.model(batch_to_device(features, self.model.device))["scores"]
            target = labels.to(logits.device).long().view(-1)
            weight = None if self.weight is None else self.weight.to(logits.device, logits.dtype)
            if self.focal_gamma <= 0:
                return F.cross_entropy(logits, target, weight=weight, label_smoothing=self.label_smoothing)
            per_row = F.cross_entropy(logits, target, weight=weight, label_smoothing=self.label_smoothing,
                                      reduction="none")
            p_true = torch.softmax(logits, dim=-1).gather(1, target.view(-1, 1)).view(-1)
            focal = (1 - p_true).clamp(min=0).pow(self.focal_gamma) * per_row
            norm = weight[target].sum() if weight is not None else torch.tensor(float(len(target)))
            return focal.sum() / norm.clamp(min=1e-12)

    return RelationLoss


# ---- evaluation during training ------------------------------------------------------------------------
def predict_probs(model, pairs: Sequence[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
    """Class probabilities (softmax of the logits), rows in input order, columns in the model's label order."""
    if not pairs:
        return np.zeros((0, int(model.num_labels)))
    logits = np.asarray(model.predict([list(p) for p in pairs], batch_size=batch_size, show_progress_bar=False,
                                      convert_to_numpy=True), dtype=np.float64)
    logits = logits.reshape(len(pairs), -1)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def _evaluator_class():
    from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

    class RelationEvaluator(BaseEvaluator):
        """KLUE micro-F1 (no-relation excluded; the primary metric), AUPRC and accuracy on labelled rows, plus
        SemEval's official macro-F1 for SemEval labels; fractions in [0, 1]."""

        def __init__(self, pairs, gold, labels, no_relation, *, name: str = DEV_NAME, batch_size: int = 32):
            super().__init__()
            self.pairs, self.gold, self.labels, self.no_relation = list(pairs), list(gold), list(labels), no_relation
            self.name, self.batch_size = name, batch_size
            self.primary_metric = PRIMARY

        def __call__(self, model, output_path=None, epoch: int = -1, steps: int = -1) -> dict:
            probs = predict_probs(model, self.pairs, self.batch_size)
            scores = relation_metrics(self.gold, probs, self.labels, self.no_relation)
            metrics = {k: v for k, v in scores.items() if isinstance(v, float)}
            metrics = self.prefix_name_to_metrics(metrics, self.name)
            self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
            return metrics

    return RelationEvaluator


def relation_evaluator(pairs, gold, labels, no_relation, **kwargs):
    """A ``RelationEvaluator`` for ``CrossEncoderTrainer``; its class is built on first use so
    sentence-transformers loads only when training."""
    return _evaluator_class()(pairs, gold, labels, no_relation, **kwargs)


# ---- the head ------------------------------------------------------------------------------------------
class RelationHead(HeadTrainer[RelationRow]):
    """A ``CrossEncoder`` with one output per label over the rendered pair; dev micro-F1 picks the best epoch."""

    kind = RE_KIND
    title = "relation classifier"
    noun = "rows"
    timed = ("dev", "test")
    dev_name = DEV_NAME
    primary = PRIMARY
    epoch_metrics = {"micro_f1": "micro_f1", "auprc": "auprc", "semeval_macro_f1": "semeval_macro_f1"}
    epoch_columns = {"dev micro-F1": "micro_f1", "dev AUPRC": "auprc"}
    best_text = "micro-F1"
    use_shell = ["fewlabel re predict THIS_FOLDER test.json --out submission.csv"]
    use_python = ["from fewlabel.retrieval import RelationClassifier",
                  "probs = RelationClassifier(\"THIS_FOLDER\").predict_proba(rows)",
                  "# rows: fewlabel.indexing.read_relations(\"test.json\", labels=...)"]

    def __init__(self, labels: Sequence[str], options: RelationOptions, settings: TrainSettings,
                 run: RunOptions) -> None:
        super().__init__(settings, run)
        self.labels = list(labels)
        if len(self.labels) < 2:
            raise InvalidArgumentError(f"a relation classifier needs at least 2 labels, got {len(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise InvalidArgumentError("the label list names a label twice")
        if settings.freeze_embeddings and options.marker == "entity":
            raise InvalidArgumentError(
                "--freeze-embeddings cannot train the new [E1] … [/E2] marker tokens; use --marker "
                                "typed")
        self.options = options.record(self.labels)
        self.sep = "[SEP]"  # the tokenizer's, once the model is loaded
        self.weight: list[float] | None = None

    def problem(self, row: RelationRow, role: str) -> tuple[str, str] | None:
        if row.label in self.labels:
            return None
        what = "has no label" if row.label is None else f"has label '{row.label}', which is not in the label list"
        return f"{role} row '{row.id}' {what}", "label"

    @staticmethod
    def fingerprint_fields(row: RelationRow) -> list:
        return [row.sentence, row.subject.to_klue(), row.object.to_klue(), row.label]

    def resume_options(self) -> dict:
        return {"options": self.options}

    def pairs(self, rows: list[RelationRow]) -> list[tuple[str, str]]:
        return [r.pair() for r in render_rows(rows, self.options["marker"], sep=self.sep,
                                              type_language=self.options["type_language"])]

    def new_model(self, job: Job[RelationRow]):
        return _new_model(job.location, dict(enumerate(self.labels)), self.options, self.settings, self.run.device)

    def trainer(self, model, job: Job[RelationRow]):
        from datasets import Dataset
        from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

        self.sep = model.tokenizer.sep_token or "[SEP]"
        label2id = {name: i for i, name in enumerate(self.labels)}
        train_pairs = self.pairs(job.train)
        dataset = Dataset.from_dict({"first": [p[0] for p in train_pairs], "second": [p[1] for p in train_pairs],
                                     "label": [label2id[_label_of(r)] for r in job.train]})
        options = self.options
        self.weight = class_weights(job.train, self.labels) if options["loss"] == "weighted" else None
        loss = relation_loss(model, weight=self.weight, label_smoothing=options["label_smoothing"],
                             focal_gamma=options["focal_gamma"] if options["loss"] == "focal" else 0.0)
        evaluator = (relation_evaluator(self.pairs(job.dev), [_label_of(r) for r in job.dev], self.labels,
                                        options["no_relation"], batch_size=self.settings.batch_size)
                     if job.dev else None)
        args = CrossEncoderTrainingArguments(**self.args(job, len(dataset)))
        return CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss, evaluator=evaluator)

    def score(self, model, rows: list[RelationRow]) -> dict:
        return relation_metrics([_label_of(r) for r in rows], predict_probs(model, self.pairs(rows),
                                                                       self.settings.batch_size),
                                self.labels, self.options["no_relation"])

    def class_counts(self, rows: list[RelationRow]) -> dict:
        return label_counts(rows)

    def head_record(self, job: Job[RelationRow]) -> dict:
        return {"labels": self.labels, "id2label": {str(i): n for i, n in enumerate(self.labels)}, **self.options,
                "sep": self.sep, "max_length": self.settings.max_length}

    def method_record(self, job: Job[RelationRow]) -> dict:
        options = self.options
        objective = {"ce": "cross-entropy", "weighted": "cross-entropy with balanced class weights",
                     "focal": f"focal loss (gamma {options['focal_gamma']})"}[options["loss"]]
        if options["label_smoothing"]:
            objective += f", label smoothing {options['label_smoothing']}"
        return {"objective": objective, "class_weights": self.weight}

    # ---- the card ------------------------------------------------------------------------------------------
    def about(self, info: dict) -> str:
        marker_text = {"baseline": "the competition baseline, `subject[SEP]object` paired with the sentence",
                       "entity": "entity markers `[E1] … [/E1]`, `[E2] … [/E2]` (added to the tokenizer)",
                       "typed": "typed entity markers with punctuation, `@ * type * subject @`, `# ^ type ^ object #`"
                       }[info["marker"]]
        return (f"It reads a sentence rendered with {marker_text} (type words: {info['type_language']}), and "
                f"classifies the pair ({POOLING_TEXT[info['pooling']]}) into {len(info['labels'])} relations. The "
                "label order is `labels` in `fewlabel_model.json` and `id2label` in `config.json`; it is the order of "
                "the `probs` column that `fewlabel re predict` writes.")

    def data_notes(self, info: dict) -> list[str]:
        return ["", "Train classes: " + ", ".join(f"{k} {v:,}" for k, v in info["data"]["train_classes"].items())]

    def setting_rows(self, info: dict) -> list[tuple[str, object]]:
        return [("rendering", info["marker"]), ("objective", info["objective"]),
                ("pooling", POOLING_TEXT[info["pooling"]]), ("no-relation class", info["no_relation"])]

    def score_block(self, title: str, scores: dict, info: dict) -> list[str]:
        line = (f"micro-F1 (without {scores['no_relation'] or 'a no-relation class'}) {percent(scores['micro_f1'])}, "
                f"AUPRC {percent(scores['auprc'])} (over {scores['auprc_classes']} classes with examples), accuracy "
                f"{percent(scores['accuracy'])}")
        if "semeval_macro_f1" in scores:
            line += f", SemEval official macro-F1 {percent(scores['semeval_macro_f1'])}"
        return [f"### {title}", "", f"{line} on {scores['n']:,} rows (x100).", ""]

    @staticmethod
    def fmt(value: float | None) -> str:
        return percent(value)


def _new_model(location: str, id2label: dict[int, str], options: dict, settings: TrainSettings,
               device: str | None):
    """The untrained classifier: transformers' sequence-classification head (``cls``) or the modular
    ``Transformer`` -> :class:`EntityStartPooling` -> ``Dense`` cross-encoder (``entity-start``)."""
    from sentence_transformers.base.modules import Dense, Transformer
    from sentence_transformers.cross_encoder import CrossEncoder

    from fewlabel.indexing.relation.pooling import EntityStartPooling, marker_token_ids

    config = {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}, "local_files_only": True}
    if options["pooling"] == "cls":
        model = CrossEncoder(location, num_labels=len(id2label), max_length=settings.max_length,
                             device=pick_device(device), local_files_only=True, config_kwargs=config)
        if options["marker"] == "entity":
            add_entity_tokens(model[0])
        return model
    body = Transformer(location, transformer_task="feature-extraction", max_seq_length=settings.max_length,
                       config_kwargs=config, model_kwargs={"local_files_only": True},
                       processor_kwargs={"local_files_only": True})
    if options["marker"] == "entity":
        add_entity_tokens(body)
    subject, obj = OPENING_MARKERS[options["marker"]]
    try:
        pooling = EntityStartPooling(marker_token_ids(body.tokenizer, subject), marker_token_ids(body.tokenizer, obj),
                                     transformers_model(body).config.hidden_size)
    except ValueError as exc:
        raise ModelError(f"entity-start pooling: {exc}; use --pooling cls") from exc
    head = Dense(pooling.get_sentence_embedding_dimension(), len(id2label), activation_function=None,
                 module_input_name="sentence_embedding", module_output_name="scores")
    return CrossEncoder(modules=[body, pooling, head], max_length=settings.max_length, device=pick_device(device))


def add_entity_tokens(module) -> None:
    """Add ``[E1] [/E1] [E2] [/E2]`` to the tokenizer of a ``Transformer`` module as special tokens and grow the
    embedding matrix to match (the new rows are learned in training and saved with the model)."""
    tokenizer = module.tokenizer
    added = tokenizer.add_tokens(list(ENTITY_MARKERS), special_tokens=True)
    if added:
        hf_model = transformers_model(module)
        if hf_model is None or not hasattr(hf_model, "resize_token_embeddings"):
            raise ModelError("cannot add the entity-marker tokens to this model (no resizable embeddings); "
                             "use --marker typed")
        hf_model.resize_token_embeddings(len(tokenizer))


POOLING_TEXT = {"cls": "cls (the first token's vector)",
                "entity-start": "entity-start (first token + subject and object opening markers, concatenated)"}


def _label_of(row: RelationRow) -> str:
    """The label of a row that the head's check let through (it refuses unlabelled ones)."""
    assert row.label is not None
    return row.label
