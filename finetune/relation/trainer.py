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
Use the folder with ``fewlabel re predict`` or :class:`fewlabel.retrieval.relation.classifier.RelationClassifier`."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fewlabel.finetune.runs import (
    finish_run,
    freeze_word_embeddings,
    prepare_out,
    quiet_trainer,
    resumable_settings,
    resume_point,
    run_outcome,
    trainer_args,
    transformers_model,
)
from fewlabel.finetune.settings import TrainSettings, resolve_base
from fewlabel.indexing.errors import DataError, InvalidArgumentError, ModelError, first_line
from fewlabel.indexing.hf import pick_device, quiet_hf
from fewlabel.indexing.model_folder import RE_KIND
from fewlabel.indexing.relation.data import RelationRow, label_counts, no_relation_label
from fewlabel.indexing.relation.metrics import relation_metrics
from fewlabel.indexing.relation.render import ENTITY_MARKERS, TYPE_LANGUAGES, check_marker, render_rows

__all__ = ["LOSSES", "POOLINGS", "class_weights", "predict_probs", "relation_evaluator",
           "relation_loss", "train_re_classifier"]

LOSSES = ("ce", "weighted", "focal")
POOLINGS = ("cls", "entity-start")
#: The opening marker of the subject and of the object in each marker rendering (entity-start pooling).
OPENING_MARKERS = {"typed": ("@", "#"), "entity": (ENTITY_MARKERS[0], ENTITY_MARKERS[2])}
DEV_NAME = "re-dev"
PRIMARY = "micro_f1"


def train_re_classifier(train_rows: Sequence[RelationRow], dev_rows: Sequence[RelationRow] | None,
                        labels: Sequence[str], base: str, out_dir: str | Path, *,
                        test_rows: Sequence[RelationRow] | None = None, marker: str = "typed",
                        type_language: str = "auto", loss: str = "ce", focal_gamma: float = 2.0,
                        label_smoothing: float = 0.0, no_relation: str | None = None, pooling: str = "cls",
                        epochs: float = 3, freeze_embeddings: bool = False,
                        lr: float = 3e-5, batch_size: int = 16, max_length: int = 128, warmup_ratio: float = 0.1,
                        seed: int = 42, resume: bool = True, max_steps: int | None = None, device: str | None = None,
                        show_progress: bool = True, keep_checkpoints: bool = False,
                        sources: dict[str, str] | None = None) -> dict:
    """Fine-tune a relation classifier on ``base`` (registry name or folder) and save it to ``out_dir``.

    ``labels`` is the label list in order (KLUE's ``relation_list.json``); ``no_relation`` defaults to
    ``no_relation`` or ``Other`` when the list has one. Returns a summary: output folder, dev and test scores,
    steps, seconds, where it resumed from."""
    settings = TrainSettings(epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length,
                             warmup_ratio=warmup_ratio, seed=seed, max_steps=max_steps,
                             freeze_embeddings=freeze_embeddings)
    labels = list(labels)
    options = _check_options(labels, marker, type_language, loss, focal_gamma, label_smoothing, no_relation,
                             pooling, freeze_embeddings)
    train = _check_rows(train_rows, labels, "train")
    dev = _check_rows(dev_rows, labels, "dev") if dev_rows else []
    test = _check_rows(test_rows, labels, "test") if test_rows else []
    location, base_info = resolve_base(base)
    out, ckpt_dir = prepare_out(out_dir)
    resume_from = _resume_point(ckpt_dir, base_info, settings, options, train, dev, resume)
    with quiet_hf(logs=False, bars=not show_progress):
        return _train(train, dev, test, labels, options, location, base, base_info, out, ckpt_dir, resume_from,
                      settings, device, show_progress, keep_checkpoints, sources)


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


# ---- training ------------------------------------------------------------------------------------------
def _train(train: list[RelationRow], dev: list[RelationRow], test: list[RelationRow], labels: list[str],
           options: dict, location: str, base: str, base_info: dict, out: Path, ckpt_dir: Path,
           resume_from: str | None, settings: TrainSettings, device: str | None, show_progress: bool,
           keep_checkpoints: bool, sources: dict[str, str] | None) -> dict:
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from transformers import set_seed

    started = time.perf_counter()
    set_seed(settings.seed)  # the new classifier head's initial weights
    id2label = dict(enumerate(labels))
    with quiet_hf():
        try:
            model = _new_model(location, id2label, options, settings, device)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"cannot load base model '{base}' as a cross-encoder: {first_line(exc)}") from exc
    if settings.freeze_embeddings:
        freeze_word_embeddings(model)
    sep = model.tokenizer.sep_token or "[SEP]"
    options = {**options, "sep": sep}

    def pairs(rows: list[RelationRow]) -> list[tuple[str, str]]:
        return [r.pair() for r in render_rows(rows, options["marker"], sep=sep, type_language=options["type_language"])]

    label2id = {name: i for i, name in enumerate(labels)}
    train_pairs = pairs(train)
    dataset = Dataset.from_dict({"first": [p[0] for p in train_pairs], "second": [p[1] for p in train_pairs],
                                 "label": [label2id[_label_of(r)] for r in train]})
    weight = class_weights(train, labels) if options["loss"] == "weighted" else None
    loss = relation_loss(model, weight=weight, label_smoothing=options["label_smoothing"],
                         focal_gamma=options["focal_gamma"] if options["loss"] == "focal" else 0.0)
    evaluator = (relation_evaluator(pairs(dev), [r.label for r in dev], labels, options["no_relation"],
                                   batch_size=settings.batch_size) if dev else None)
    args = CrossEncoderTrainingArguments(**trainer_args(ckpt_dir, settings, len(dataset), bool(dev), device,
                                                         show_progress, metric=f"eval_{DEV_NAME}_{PRIMARY}"))
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss, evaluator=evaluator)
    quiet_trainer(trainer, show_progress)
    trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - started

    model.save_pretrained(str(out), create_model_card=False)
    dev_scores = _score(model, pairs(dev), dev, labels, options, settings) if dev else None
    test_scores = _score(model, pairs(test), test, labels, options, settings) if test else None
    info = _info(base_info, settings, options, labels, train, dev, test, trainer, dev_scores, test_scores, seconds,
                 resume_from, sources, weight)
    out = finish_run(out, ckpt_dir, trainer, info, model_card=_model_card(info), keep_checkpoints=keep_checkpoints,
                     scores={"dev": info["dev"], "test": info["test"]})
    return {"out_dir": str(out), **{k: info[k] for k in ("dev", "test", "steps", "train_seconds", "resumed_from")}}


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


def _score(model, pairs: list[tuple[str, str]], rows: list[RelationRow], labels: list[str], options: dict,
           settings: TrainSettings) -> dict:
    started = time.perf_counter()
    scores = relation_metrics([_label_of(r) for r in rows], predict_probs(model, pairs, settings.batch_size), labels,
                              options["no_relation"])
    scores["seconds"] = round(time.perf_counter() - started, 1)
    return scores


# ---- checks and bookkeeping ----------------------------------------------------------------------------
def _check_options(labels: list[str], marker: str, type_language: str, loss: str, focal_gamma: float,
                   label_smoothing: float, no_relation: str | None, pooling: str = "cls",
                   freeze_embeddings: bool = False) -> dict:
    if len(labels) < 2:
        raise InvalidArgumentError(f"a relation classifier needs at least 2 labels, got {len(labels)}")
    if len(set(labels)) != len(labels):
        raise InvalidArgumentError("the label list names a label twice")
    check_marker(marker)
    if type_language not in TYPE_LANGUAGES:
        raise InvalidArgumentError(f"type language must be one of {', '.join(TYPE_LANGUAGES)}, got {type_language!r}")
    if loss not in LOSSES:
        raise InvalidArgumentError(f"unknown loss '{loss}'; choose one of {', '.join(LOSSES)}")
    if freeze_embeddings and marker == "entity":
        raise InvalidArgumentError(
            "--freeze-embeddings cannot train the new [E1] … [/E2] marker tokens; use --marker typed")
    if pooling not in POOLINGS:
        raise InvalidArgumentError(f"unknown pooling '{pooling}'; choose one of {', '.join(POOLINGS)}")
    if pooling == "entity-start" and marker not in OPENING_MARKERS:
        raise InvalidArgumentError(
            f"entity-start pooling needs entity markers in the text; the '{marker}' rendering has "
                            f"none (use --marker {' or '.join(OPENING_MARKERS)})")
    if not 0 <= label_smoothing < 1:
        raise InvalidArgumentError(f"label smoothing must be in [0, 1), got {label_smoothing}")
    if loss == "focal" and not focal_gamma > 0:
        raise InvalidArgumentError(f"focal gamma must be > 0, got {focal_gamma}")
    none = no_relation if no_relation is not None else no_relation_label(labels)
    if none is not None and none not in labels:
        raise InvalidArgumentError(f"the no-relation class '{none}' is not in the label list")
    return {"marker": marker, "type_language": type_language, "loss": loss,
            "focal_gamma": focal_gamma if loss == "focal" else None, "label_smoothing": label_smoothing,
            "no_relation": none, "pooling": pooling}


def _label_of(row: RelationRow) -> str:
    """The label of a row that `_check_rows` let through (it refuses unlabelled ones)."""
    assert row.label is not None
    return row.label


def _check_rows(rows: Sequence[RelationRow] | None, labels: list[str], role: str) -> list[RelationRow]:
    rows = list(rows or [])
    if not rows:
        raise DataError(f"no {role} rows")
    known = set(labels)
    bad = next((r for r in rows if r.label not in known), None)
    if bad is not None:
        what = "has no label" if bad.label is None else f"has label '{bad.label}', which is not in the label list"
        raise DataError(f"{role} row '{bad.id}' {what}", line=bad.line, field="label")
    return rows


def _fingerprint(rows: Sequence[RelationRow]) -> str:
    h = hashlib.sha256()
    for r in rows:
        item = [r.sentence, r.subject.to_klue(), r.object.to_klue(), r.label]
        h.update(json.dumps(item, ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def _resume_point(ckpt_dir: Path, base_info: dict, settings: TrainSettings, options: dict,
                  train: list[RelationRow], dev: list[RelationRow], resume: bool) -> str | None:
    """The checkpoint to resume from (see `fewlabel.finetune.runs.resume_point`)."""
    run = {"kind": RE_KIND, "base": base_info["name"], "train": _fingerprint(train), "dev": _fingerprint(dev),
           "options": options, "settings": resumable_settings(settings)}
    return resume_point(ckpt_dir, run, resume)




def _info(base_info: dict, settings: TrainSettings, options: dict, labels: list[str], train: list[RelationRow],
          dev: list[RelationRow], test: list[RelationRow], trainer, dev_scores: dict | None, test_scores: dict | None,
          seconds: float, resume_from: str | None, sources: dict[str, str] | None,
          weight: list[float] | None) -> dict:
    key = f"eval_{DEV_NAME}_"
    per_epoch = [{"epoch": e.get("epoch"), "step": e.get("step"), "micro_f1": e.get(key + "micro_f1"),
                  "auprc": e.get(key + "auprc"), "semeval_macro_f1": e.get(key + "semeval_macro_f1")}
                 for e in trainer.state.log_history if key + PRIMARY in e]
    objective = {"ce": "cross-entropy", "weighted": "cross-entropy with balanced class weights",
                 "focal": f"focal loss (gamma {options['focal_gamma']})"}[options["loss"]]
    if options["label_smoothing"]:
        objective += f", label smoothing {options['label_smoothing']}"
    return {"kind": RE_KIND, "labels": labels, "id2label": {str(i): n for i, n in enumerate(labels)},
            **options, "max_length": settings.max_length, "base": base_info["name"], "settings": settings.to_dict(),
            "objective": objective, "class_weights": weight,
            "data": {"train_rows": len(train), "dev_rows": len(dev), "test_rows": len(test),
                     "train_classes": label_counts(train), "train_fingerprint": _fingerprint(train),
                     **({"sources": sources} if sources else {})},
            **run_outcome(trainer, dev_scores, test_scores, per_epoch, seconds, resume_from)}


POOLING_TEXT = {"cls": "cls (the first token's vector)",
                "entity-start": "entity-start (first token + subject and object opening markers, concatenated)"}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _score_lines(name: str, scores: dict) -> list[str]:
    line = (f"micro-F1 (without {scores['no_relation'] or 'a no-relation class'}) {_pct(scores['micro_f1'])}, "
            f"AUPRC {_pct(scores['auprc'])} (over {scores['auprc_classes']} classes with examples), accuracy "
            f"{_pct(scores['accuracy'])}")
    if "semeval_macro_f1" in scores:
        line += f", SemEval official macro-F1 {_pct(scores['semeval_macro_f1'])}"
    return [f"### {name}", "", f"{line} on {scores['n']:,} rows (x100).", ""]


def _model_card(info: dict) -> str:
    data = info["data"]
    marker_text = {"baseline": "the competition baseline, `subject[SEP]object` paired with the sentence",
                   "entity": "entity markers `[E1] … [/E1]`, `[E2] … [/E2]` (added to the tokenizer)",
                   "typed": "typed entity markers with punctuation, `@ * type * subject @`, `# ^ type ^ object #`"
                   }[info["marker"]]
    lines = ["# fewlabel relation classifier", "",
             f"Fine-tuned from `{info['base']}` by fewlabel ({info['trained_at']}) with sentence-transformers "
             f"{info['versions']['sentence_transformers']}.", "",
             f"It reads a sentence rendered with {marker_text} (type words: {info['type_language']}), and "
             f"classifies the pair ({POOLING_TEXT[info['pooling']]}) into {len(info['labels'])} relations. The label "
             "order is `labels` in `fewlabel_model.json` and `id2label` in `config.json`; it is the order of the "
             "`probs` column that `fewlabel re predict` writes.", "",
             "## Data", "", f"- train: {data['train_rows']:,} rows", f"- dev: {data['dev_rows']:,} rows",
             f"- test: {data['test_rows']:,} rows"]
    for role, path in (data.get("sources") or {}).items():
        lines.append(f"- {role} file: `{path}`")
    lines += ["", "Train classes: " + ", ".join(f"{k} {v:,}" for k, v in data["train_classes"].items()), "",
              "## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in info["settings"].items()]
    lines += [f"| rendering | {info['marker']} |", f"| objective | {info['objective']} |",
              f"| pooling | {POOLING_TEXT[info['pooling']]} |",
              f"| no-relation class | {info['no_relation']} |",
              f"| steps | {info['steps']} |", f"| training time | {info['train_seconds']} s |"]
    if info.get("resumed_from"):
        lines.append(f"| resumed from | `{Path(info['resumed_from']).name}` |")
    lines += ["", "## Scores", ""]
    if info["dev"]:
        lines += _score_lines("Dev (final model)", info["dev"])
        if info["dev_per_epoch"]:
            lines += ["| epoch | step | dev micro-F1 | dev AUPRC |", "|---|---|---|---|"]
            lines += [f"| {e['epoch']:.2f} | {e['step']} | {_pct(e['micro_f1'])} | {_pct(e['auprc'])} |"
                      for e in info["dev_per_epoch"]]
            lines += ["", "The checkpoint with the best dev micro-F1 was kept.", ""]
    else:
        lines += ["No dev rows were given: the last checkpoint was kept.", ""]
    if info["test"]:
        lines += _score_lines("Test (held out, scored once)", info["test"])
    lines += ["## Use", "", "```bash", "fewlabel re predict THIS_FOLDER test.json --out submission.csv", "```", "",
              "```python", "from fewlabel.retrieval import RelationClassifier",
              "probs = RelationClassifier(\"THIS_FOLDER\").predict_proba(rows)",
              "# rows: fewlabel.indexing.read_relations(\"test.json\", labels=...)",
              "```", ""]
    return "\n".join(lines)
