"""SetFit (Tunstall et al., 2022) on a fewlabel encoder body, through the setfit library: the body is
fine-tuned contrastively on pairs drawn from the few labelled texts, then a logistic-regression head is fit
on its embeddings (one-vs-rest for multi-label data).

The body is a registry encoder or a sentence-transformers folder; the encoder's query prefix (e5's
``"query: "``) is put before every text, in training and prediction alike. How long the body trains is chosen
on dev data only: with dev rows, setfit scores the contrastive loss on pairs drawn from them a few times
(``evals``) and keeps the best checkpoint (``load_best_model_at_end``). Without dev rows the paper's recipe
runs as is (``num_iterations`` pairs per text, ``epochs``). ``max_steps`` caps the work."""

from __future__ import annotations

import logging
import math
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fewlabel.finetune.runs import freeze_word_embeddings, quiet_trainer
from fewlabel.finetune.settings import resolve_base
from fewlabel.indexing.errors import InvalidArgumentError
from fewlabel.indexing.hf import pick_device, quiet_hf
from fewlabel.indexing.readers import label_matrix
from fewlabel.indexing.text_classifier import decide

if TYPE_CHECKING:
    from setfit import SetFitModel

__all__ = ["SetFitClassifier", "train_setfit"]


@dataclass
class SetFitClassifier:
    """A trained ``SetFitModel`` plus what it needs to be called like the other fewlabel classifiers."""

    model: SetFitModel
    labels: list[str]
    multi_label: bool
    prefix: str = ""
    info: dict | None = None

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(n, L) probabilities in ``labels`` order (per-label for multi-label)."""
        if not len(texts):
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        probs = self.model.predict_proba([self.prefix + t for t in texts], batch_size=batch_size, as_numpy=True)
        if isinstance(probs, list):  # one-vs-rest heads of some setfit versions: a list of (n, 2) arrays
            probs = np.stack([p[:, 1] for p in probs], axis=1)
        probs = np.asarray(probs, dtype=np.float32)
        classes = getattr(self.model.model_head, "classes_", None)
        if not self.multi_label and classes is not None and len(classes) != len(self.labels):
            full = np.zeros((len(probs), len(self.labels)), dtype=np.float32)  # classes absent from training: 0
            full[:, np.asarray(classes, dtype=int)] = probs
            probs = full
        return probs

    def predict(self, texts: Sequence[str], threshold: float = 0.5, batch_size: int = 64) -> np.ndarray:
        return decide(self.predict_proba(texts, batch_size=batch_size), self.multi_label, threshold)


@contextmanager
def quiet_setfit() -> Iterator[None]:
    """setfit's own chatter, silenced while it trains (the training bar stays): its "***** Running training
    *****" block, the datasets "Map" bars, and torch's pin_memory warning on a CPU. auto cross-validates SetFit
    by default at small N, so an `index build` would print them once per fold."""
    import datasets

    bars_were_on = datasets.is_progress_bar_enabled()
    setfit_log = logging.getLogger("setfit")
    level = setfit_log.level
    datasets.disable_progress_bars()
    setfit_log.setLevel(logging.WARNING)  # not transformers': its level decides whether the training bar shows
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pin_memory.*", category=UserWarning)
            yield
    finally:
        setfit_log.setLevel(level)
        if bars_were_on:
            datasets.enable_progress_bars()


def train_setfit(train_texts: Sequence[str], train_labels: Sequence[Sequence[str]], labels: Sequence[str],
                 base: str, *, multi_label: bool, dev_texts: Sequence[str] | None = None,
                 dev_labels: Sequence[Sequence[str]] | None = None, num_iterations: int = 20, epochs: float = 1,
                 max_steps: int | None = None, batch_size: int = 16, evals: int = 4, eval_pairs: int = 256,
                 seed: int = 42, device: str | None = None, show_progress: bool = False,
                 time_limit_s: float | None = None, freeze_embeddings: bool = False) -> SetFitClassifier:
    """Train SetFit on ``base`` and return it. ``num_iterations`` pairs per text and epoch (the SetFit
    paper's 20); ``eval_pairs`` bounds the dev pairs scored at each evaluation (setfit draws ``2 *
    num_iterations`` pairs per dev text, so only the first ``eval_pairs / (2 * num_iterations)`` dev texts
    are used). ``time_limit_s`` counts from this call, loading the body included, and ends the body's training
    when it is spent (then the head is fit): an index's time budget is wall time, not training steps alone.
    ``freeze_embeddings`` keeps the word-embedding matrix fixed (see :class:`~fewlabel.finetune.settings.TrainSettings`:
    most of e5-small's weights, and most of a CPU step's time; a few dozen texts touch few of its rows)."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from fewlabel.finetune.runs import deadline_callback

    called = time.monotonic()
    labels = list(labels)
    if not train_texts:
        raise InvalidArgumentError("no training rows")
    if len(train_texts) != len(train_labels) or (dev_texts and len(dev_texts) != len(dev_labels or [])):
        raise InvalidArgumentError("texts and labels differ in length")
    location, base_info = resolve_base(base)
    prefix = base_info.get("prefix", "") or ""
    y_train = label_matrix(train_labels, labels, "train").astype(np.float32)

    def dataset(texts, y) -> Dataset:
        targets = [list(map(int, row)) for row in y] if multi_label else [int(row.argmax()) for row in y]
        return Dataset.from_dict({"text": [prefix + t for t in texts], "label": targets})

    dev_set = None
    if dev_texts and dev_labels:
        # setfit draws 2 * num_iterations pairs per dev text whatever eval_max_steps says: keep only the
        # first texts that give about `eval_pairs` pairs, or each evaluation would cost more than training
        keep = max(2, math.ceil(eval_pairs / (2 * num_iterations)))
        dev_set = dataset(dev_texts[:keep], label_matrix(dev_labels[:keep], labels, "dev").astype(np.float32))
    pairs = 2 * num_iterations * len(train_texts)  # setfit's oversampling draws this many pairs per epoch
    total = min(max_steps or 10**9, max(1, math.ceil(pairs * epochs / batch_size)))
    every = max(1, math.ceil(total / max(1, evals)))
    with quiet_hf():
        model = SetFitModel.from_pretrained(location, multi_target_strategy="one-vs-rest" if multi_label else None,
                                            labels=labels, device=pick_device(device))
    if freeze_embeddings:
        freeze_word_embeddings(model.model_body)
    with tempfile.TemporaryDirectory(prefix="fewlabel-setfit-") as tmp:
        on_dev = ({"eval_strategy": "steps", "eval_steps": every, "save_strategy": "steps", "save_steps": every,
                   "save_total_limit": 1, "load_best_model_at_end": True,
                   "eval_max_steps": max(1, eval_pairs // batch_size)} if dev_set is not None
                  else {"eval_strategy": "no", "save_strategy": "no"})
        args = TrainingArguments(output_dir=tmp, batch_size=batch_size, num_epochs=epochs, max_steps=total,
                                 num_iterations=num_iterations, seed=seed, report_to="none",
                                 show_progress_bar=show_progress, logging_steps=every, **on_dev)
        with quiet_setfit():
            callbacks = [deadline_callback(time_limit_s, since=called)] if time_limit_s else None
            trainer = Trainer(model=model, args=args, train_dataset=dataset(train_texts, y_train),
                              eval_dataset=dev_set, callbacks=callbacks)
            quiet_trainer(trainer, show_progress)  # the loss on the bar, not printed as raw dicts
            trainer.train()
        st_state = trainer.st_trainer.state if getattr(trainer, "st_trainer", None) else None
        history = st_state.log_history if st_state is not None else []
    dev_loss = [e["eval_embedding_loss"] for e in history if "eval_embedding_loss" in e]
    info = {"base": base, "steps": total, "eval_every": every, "dev_embedding_loss": dev_loss,
            "num_iterations": num_iterations, "batch_size": batch_size, "seed": seed,
            "trained_steps": st_state.global_step if st_state is not None else None}
    return SetFitClassifier(model=model, labels=labels, multi_label=multi_label, prefix=prefix, info=info)
