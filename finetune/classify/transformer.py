"""Fine-tune a text-classification head on an encoder body (single- or multi-label) with transformers'
``Trainer``: the "fine-tune" method of chapter 9, for when there are enough labels to move the body itself.

The body is any registry encoder or model folder (``e5-small``, ``minilm``, a fine-tuned folder); the head is
transformers' own sequence-classification head (``AutoModelForSequenceClassification``), with
``problem_type="multi_label_classification"`` (one sigmoid per label, BCE loss) for multi-label data and a
softmax (cross-entropy) otherwise. The encoder's query prefix (e5's ``"query: "``) is put before every text,
as the encoder does.

How long to train is chosen on dev data only: with dev rows the model is scored (micro-F1; for multi-label
data the best over decision thresholds) a few times
during training (``evals``) and the best checkpoint is kept (``load_best_model_at_end``); without dev rows
the last step is kept. ``settings.max_steps`` caps the work, which is how a CPU budget is kept."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from fewlabel.finetune.runs import quiet_trainer
from fewlabel.finetune.settings import RunOptions, TrainSettings, resolve_base
from fewlabel.indexing.encoders.encoder import transformer_folder
from fewlabel.indexing.errors import InvalidArgumentError
from fewlabel.indexing.hf import pick_device, quiet_hf
from fewlabel.indexing.readers import label_matrix
from fewlabel.indexing.text_classifier import TextClassifier, decide

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# TextClassifier and decide: from indexing
__all__ = ["CLASSIFIER_SETTINGS", "TextClassifier", "decide", "fine_tune_classifier"]


CLASSIFIER_SETTINGS = TrainSettings(epochs=10, lr=5e-5)
"""The default schedule: a new head on few rows needs more epochs and a higher rate than the heads'
:class:`TrainSettings` defaults (``max_steps`` or ``time_limit_s`` keep a CPU budget)."""


def fine_tune_classifier(train_texts: Sequence[str], train_labels: Sequence[Sequence[str]], labels: Sequence[str],
                         base: str, settings: TrainSettings = CLASSIFIER_SETTINGS, *, multi_label: bool,
                         dev_texts: Sequence[str] | None = None, dev_labels: Sequence[Sequence[str]] | None = None,
                         evals: int = 5, run: RunOptions | None = None, work_dir: str | Path | None = None,
                         time_limit_s: float | None = None) -> TextClassifier:
    """Fine-tune ``base`` with a classification head on the rows and return the model that scored best
    on dev (micro-F1; the last one without dev rows). Checkpoints go to ``work_dir`` (a temporary folder
    by default, removed afterwards). ``time_limit_s`` ends training after that many seconds (the steps so far
    are kept), whatever ``settings.max_steps`` says. Of ``run`` only ``device`` and ``show_progress`` apply (no
    progress bar by default): the checkpoints are a working copy, never resumed or kept."""
    labels = list(labels)
    run = run or RunOptions(show_progress=False)
    if not train_texts:
        raise InvalidArgumentError("no training rows")
    if len(train_texts) != len(train_labels) or (dev_texts is not None and len(dev_texts) != len(dev_labels or [])):
        raise InvalidArgumentError("texts and labels differ in length")
    if len(labels) < 2:
        raise InvalidArgumentError(f"a classifier needs at least 2 labels, got {labels}")
    y_train = label_matrix(train_labels, labels, "train").astype(np.float32)
    y_dev = label_matrix(dev_labels, labels, "dev").astype(np.float32) if dev_texts and dev_labels else None
    location, base_info = resolve_base(base)
    prefix = base_info.get("prefix", "") or ""
    if work_dir is None:
        with tempfile.TemporaryDirectory(prefix="fewlabel-classifier-") as tmp:
            return _train(train_texts, y_train, dev_texts, y_dev, labels, multi_label, location, prefix, settings,
                          evals, run, Path(tmp), base, time_limit_s)
    return _train(train_texts, y_train, dev_texts, y_dev, labels, multi_label, location, prefix, settings, evals,
                  run, Path(work_dir), base, time_limit_s)


def _train(train_texts, y_train, dev_texts, y_dev, labels, multi_label, location, prefix, settings: TrainSettings,
           evals: int, run: RunOptions, work_dir: Path, base: str, time_limit_s: float | None = None) -> TextClassifier:
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from fewlabel.finetune.runs import deadline_callback, schedule_kwargs

    folder = str(transformer_folder(Path(location)))
    with quiet_hf():
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
            problem_type="multi_label_classification" if multi_label else "single_label_classification")
    if settings.freeze_embeddings:  # the optimiser takes only the parameters that require gradients
        model.get_input_embeddings().weight.requires_grad_(False)

    def dataset(texts, y) -> Dataset:
        encoded = tokenizer([prefix + t for t in texts], truncation=True, max_length=settings.max_length)
        targets = [list(map(float, row)) for row in y] if multi_label else [int(row.argmax()) for row in y]
        return Dataset.from_dict({**encoded, "labels": targets})

    train_set = dataset(train_texts, y_train)
    dev_set = dataset(dev_texts, y_dev) if dev_texts else None
    per_epoch = max(1, math.ceil(len(train_texts) / settings.batch_size))
    total = min(settings.max_steps or 10**9, math.ceil(per_epoch * settings.epochs))
    every = max(1, math.ceil(total / max(1, evals)))

    def compute_metrics(prediction) -> dict:
        from sklearn.metrics import f1_score

        logits, gold = prediction.predictions, prediction.label_ids
        if not multi_label:
            chosen, truth = np.eye(len(labels), dtype=bool)[logits.argmax(1)], np.eye(len(labels), dtype=bool)[gold]
            return {"micro_f1": float(f1_score(truth, chosen, average="micro", zero_division=0))}
        # multi-label: the best micro-F1 over decision thresholds, so an early checkpoint whose probabilities
        # are all under 0.5 is not judged worthless (the caller may tune the threshold on dev afterwards)
        probs, truth = 1 / (1 + np.exp(-logits)), gold >= 0.5
        return {"micro_f1": max(float(f1_score(truth, probs >= t, average="micro", zero_division=0))
                                for t in np.linspace(0.05, 0.95, 19))}

    args = TrainingArguments(
        **{**schedule_kwargs(settings), "max_steps": total}, output_dir=str(work_dir), report_to="none",
        eval_strategy="steps" if dev_set is not None else "no", eval_steps=every, save_strategy="steps"
        if dev_set is not None else "no", save_steps=every, save_total_limit=1,
        load_best_model_at_end=dev_set is not None, metric_for_best_model="micro_f1", greater_is_better=True,
        logging_steps=every, disable_tqdm=not run.show_progress, dataloader_num_workers=0,
        use_cpu=pick_device(run.device) == "cpu", save_only_model=True)
    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=dev_set,
                      data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics,
                      callbacks=[deadline_callback(time_limit_s)] if time_limit_s else None)
    quiet_trainer(trainer, run.show_progress)
    trainer.train()
    dev_scores = [e["eval_micro_f1"] for e in trainer.state.log_history if "eval_micro_f1" in e]
    info = {"base": base, "steps": total, "eval_every": every, "dev_micro_f1": dev_scores,
            "best_step": _best_step(trainer.state.best_model_checkpoint), "settings": settings.to_dict(),
            "trained_steps": trainer.state.global_step}
    # Trainer.model is the model passed in; transformers types it wider (Module | None)
    return TextClassifier(model=cast("PreTrainedModel", trainer.model), tokenizer=tokenizer, labels=labels,
                          multi_label=multi_label, prefix=prefix, max_length=settings.max_length, info=info)


def _best_step(checkpoint: str | None) -> int | None:
    if not checkpoint:
        return None
    tail = Path(checkpoint).name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None
