"""Train a 3-way NLI cross-encoder (entailment / neutral / contradiction) with sentence-transformers'
``CrossEncoder`` and ``CrossEncoderTrainer`` (no hand-written loop), for the zero-shot scorer
:class:`fewlabel.retrieval.zeroshot.scorers.NLIZeroShot`.

``CrossEncoder(base, num_labels=3)`` with ``id2label`` / ``label2id`` written into its config
(``0 entailment, 1 neutral, 2 contradiction``: users of the folder read them from there, never from the
order), trained with ``CrossEntropyLoss``. With dev pairs, ``CrossEncoderClassificationEvaluator`` measures
macro-F1 every epoch and the best epoch's weights are kept. Test pairs, when given, are scored once at the
end: accuracy, per-class precision / recall / F1, macro-F1 and the confusion matrix.

The output folder holds the model (``save_pretrained``), ``README.md`` (a model card: data, settings,
scores), ``scores.json`` (dev and test scores), ``training_log.jsonl`` and ``fewlabel_model.json``
(``{"kind": "nli-cross-encoder", "id2label": …}``), written last: a folder without it is unfinished.
Checkpoints go to ``OUT/checkpoints``; a later run with the same data and settings resumes from them.
The settings and the run helpers are shared with the STS heads (``fewlabel.finetune.settings``,
``fewlabel.finetune.sts.trainer``)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fewlabel.finetune.runs import (
    finish_run,
    prepare_out,
    quiet_trainer,
    resumable_settings,
    resume_point,
    run_outcome,
    trainer_args,
)
from fewlabel.finetune.settings import TrainSettings, resolve_base
from fewlabel.indexing.errors import DataError, ModelError, first_line
from fewlabel.indexing.hf import pick_device, quiet_hf
from fewlabel.indexing.model_folder import NLI_KIND
from fewlabel.indexing.nli.data import NLI_LABELS, NLIPair

__all__ = ["ID2LABEL", "nli_metrics", "train_nli_cross_encoder"]

ID2LABEL = dict(enumerate(NLI_LABELS))  # 0 entailment, 1 neutral, 2 contradiction (the GLUE-MNLI order)
LABEL2ID = {name: i for i, name in ID2LABEL.items()}
DEV_NAME = "nli-dev"


def train_nli_cross_encoder(train_pairs: Sequence[NLIPair], dev_pairs: Sequence[NLIPair] | None, base: str,
                            out_dir: str | Path, *, test_pairs: Sequence[NLIPair] | None = None, epochs: float = 2,
                            lr: float = 2e-5, batch_size: int = 16, max_length: int = 128, warmup_ratio: float = 0.1,
                            seed: int = 42, resume: bool = True, max_steps: int | None = None,
                            device: str | None = None, show_progress: bool = True, keep_checkpoints: bool = False,
                            sources: dict[str, str] | None = None) -> dict:
    """Fine-tune an NLI head on ``base`` (registry name or folder) and save it to ``out_dir``. Returns a
    summary: output folder, dev and test scores, steps, seconds, where it resumed from."""
    settings = TrainSettings(epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length,
                             warmup_ratio=warmup_ratio, seed=seed, max_steps=max_steps)
    train = _check_pairs(train_pairs, "train")
    dev = _check_pairs(dev_pairs, "dev") if dev_pairs else []
    test = _check_pairs(test_pairs, "test") if test_pairs else []
    location, base_info = resolve_base(base)
    out, ckpt_dir = prepare_out(out_dir)
    resume_from = _resume_point(ckpt_dir, base_info, settings, train, dev, resume)
    with quiet_hf(logs=False, bars=not show_progress):
        return _train(train, dev, test, location, base, base_info, out, ckpt_dir, resume_from, settings, device,
                      show_progress, keep_checkpoints, sources)




def _train(train: list[NLIPair], dev: list[NLIPair], test: list[NLIPair], location: str, base: str, base_info: dict,
           out: Path, ckpt_dir: Path, resume_from: str | None, settings: TrainSettings, device: str | None,
           show_progress: bool, keep_checkpoints: bool, sources: dict[str, str] | None) -> dict:
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderClassificationEvaluator
    from sentence_transformers.cross_encoder.losses import CrossEntropyLoss
    from transformers import set_seed

    started = time.perf_counter()
    set_seed(settings.seed)  # the new classifier head's initial weights
    with quiet_hf():
        try:
            model = CrossEncoder(location, num_labels=len(NLI_LABELS), max_length=settings.max_length,
                                 device=pick_device(device), local_files_only=True,
                                 config_kwargs={"id2label": ID2LABEL, "label2id": LABEL2ID})
        except Exception as exc:
            raise ModelError(f"cannot load base model '{base}' as a cross-encoder: {first_line(exc)}") from exc

    dataset = Dataset.from_dict({"premise": [p.premise for p in train], "hypothesis": [p.hypothesis for p in train],
                                 "label": [LABEL2ID[_label_of(p)] for p in train]})
    evaluator = (CrossEncoderClassificationEvaluator([[p.premise, p.hypothesis] for p in dev],
                                                     [LABEL2ID[_label_of(p)] for p in dev], name=DEV_NAME,
                                                     batch_size=settings.batch_size, show_progress_bar=False,
                                                     write_csv=False)
                 if dev else None)
    args = CrossEncoderTrainingArguments(**trainer_args(ckpt_dir, settings, len(dataset), bool(dev), device,
                                                         show_progress, metric=f"eval_{DEV_NAME}_f1_macro"))
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=CrossEntropyLoss(model),
                                  evaluator=evaluator)
    quiet_trainer(trainer, show_progress)
    trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - started

    model.save_pretrained(str(out), create_model_card=False)
    dev_scores = nli_metrics(predict_classes(model, dev, settings.batch_size), dev) if dev else None
    test_started = time.perf_counter()
    test_scores = nli_metrics(predict_classes(model, test, settings.batch_size), test) if test else None
    if test_scores is not None:
        test_scores["seconds"] = round(time.perf_counter() - test_started, 1)
    info = _info(base_info, settings, train, dev, test, trainer, dev_scores, test_scores, seconds, resume_from,
                 sources)
    out = finish_run(out, ckpt_dir, trainer, info, model_card=_model_card(info), keep_checkpoints=keep_checkpoints,
                     scores={"dev": info["dev"], "test": info["test"]})
    return {"out_dir": str(out), **{k: info[k] for k in ("dev", "test", "steps", "train_seconds", "resumed_from")}}


# ---- scoring -------------------------------------------------------------------------------------------
def predict_classes(model, pairs: Sequence[NLIPair], batch_size: int = 32) -> list[str]:
    """Class names predicted by a CrossEncoder (argmax of its logits, mapped through its own id2label)."""
    if not pairs:
        return []
    logits = np.asarray(model.predict([(p.premise, p.hypothesis) for p in pairs], batch_size=batch_size,
                                      show_progress_bar=False), dtype=np.float64)
    id2label = {int(k): str(v).lower() for k, v in model.config.id2label.items()}
    return [id2label[int(i)] for i in logits.argmax(axis=1)]


def nli_metrics(predicted: Sequence[str], pairs: Sequence[NLIPair]) -> dict:
    """Accuracy, macro-F1, per-class precision / recall / F1 / support and the confusion matrix (rows: gold,
    columns: predicted, both in ``NLI_LABELS`` order)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    gold = [p.label for p in pairs]
    labels = list(NLI_LABELS)
    precision, recall, f1, support = precision_recall_fscore_support(gold, list(predicted), labels=labels,
                                                                     zero_division=0)
    return {"n": len(gold), "accuracy": float(accuracy_score(gold, predicted)),
            "macro_f1": float(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0)),
            "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                                 "support": int(support[i])} for i, name in enumerate(labels)},
            "confusion": {"labels": labels, "matrix": confusion_matrix(gold, list(predicted), labels=labels).tolist()}}


# ---- helpers -------------------------------------------------------------------------------------------
def _label_of(pair: NLIPair) -> str:
    """The label of a pair that `_check_pairs` let through (it refuses unlabelled ones)."""
    assert pair.label is not None
    return pair.label


def _check_pairs(pairs: Sequence[NLIPair] | None, role: str) -> list[NLIPair]:
    pairs = list(pairs or [])
    if not pairs:
        raise DataError(f"no {role} pairs")
    unlabelled = next((p for p in pairs if p.label not in LABEL2ID), None)
    if unlabelled is not None:
        raise DataError(f"{role} pairs must carry a label ({', '.join(NLI_LABELS)}); pair '{unlabelled.id}' has "
                        f"{unlabelled.label!r}", line=unlabelled.line, field="label")
    return pairs


def _fingerprint(pairs: Sequence[NLIPair]) -> str:
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.premise, p.hypothesis, p.label], ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def _resume_point(ckpt_dir: Path, base_info: dict, settings: TrainSettings, train: list[NLIPair],
                  dev: list[NLIPair], resume: bool) -> str | None:
    """The checkpoint to resume from (see `fewlabel.finetune.runs.resume_point`)."""
    run = {"kind": NLI_KIND, "base": base_info["name"], "train": _fingerprint(train), "dev": _fingerprint(dev),
           "settings": resumable_settings(settings)}
    return resume_point(ckpt_dir, run, resume)


def _counts(pairs: Sequence[NLIPair]) -> dict[str, int]:
    return {name: sum(1 for p in pairs if p.label == name) for name in NLI_LABELS}


def _info(base_info: dict, settings: TrainSettings, train: list[NLIPair], dev: list[NLIPair], test: list[NLIPair],
          trainer, dev_scores: dict | None, test_scores: dict | None, seconds: float, resume_from: str | None,
          sources: dict[str, str] | None) -> dict:
    per_epoch = [{"epoch": e.get("epoch"), "step": e.get("step"), "macro_f1": e.get(f"eval_{DEV_NAME}_f1_macro"),
                  "accuracy": e.get(f"eval_{DEV_NAME}_f1_micro")}
                 for e in trainer.state.log_history if f"eval_{DEV_NAME}_f1_macro" in e]
    return {"kind": NLI_KIND, "id2label": {str(k): v for k, v in ID2LABEL.items()}, "max_length": settings.max_length,
            "base": base_info["name"], "settings": settings.to_dict(), "objective": "cross-entropy over 3 classes",
            "data": {"train_pairs": len(train), "dev_pairs": len(dev), "test_pairs": len(test),
                     "train_classes": _counts(train), "train_fingerprint": _fingerprint(train),
                     **({"sources": sources} if sources else {})},
            **run_outcome(trainer, dev_scores, test_scores, per_epoch, seconds, resume_from)}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _score_lines(name: str, scores: dict) -> list[str]:
    lines = [f"### {name}", "", f"Accuracy {_fmt(scores['accuracy'])}, macro-F1 {_fmt(scores['macro_f1'])} on "
             f"{scores['n']:,} pairs.", "", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    lines += [f"| {c} | {_fmt(v['precision'])} | {_fmt(v['recall'])} | {_fmt(v['f1'])} | {v['support']:,} |"
              for c, v in scores["per_class"].items()]
    return lines + [""]


def _model_card(info: dict) -> str:
    data = info["data"]
    lines = ["# fewlabel NLI cross-encoder", "",
             f"Fine-tuned from `{info['base']}` by fewlabel ({info['trained_at']}) with sentence-transformers "
             f"{info['versions']['sentence_transformers']}.", "",
             "It reads a premise and a hypothesis together and outputs three logits. Their order is in "
             "`config.json` (`id2label`): " + ", ".join(f"{k} {v}" for k, v in info["id2label"].items()) + ".",
             "fewlabel reads the order from there, as it does for any NLI checkpoint.", "",
             "## Data", "",
             f"- train: {data['train_pairs']:,} pairs (" + ", ".join(f"{k} {v:,}" for k, v in
                                                                    data["train_classes"].items()) + ")",
             f"- dev: {data['dev_pairs']:,} pairs", f"- test: {data['test_pairs']:,} pairs"]
    for role, path in (data.get("sources") or {}).items():
        lines.append(f"- {role}: `{path}`")
    lines += ["", "## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in info["settings"].items()]
    lines += [f"| objective | {info['objective']} |", f"| steps | {info['steps']} |",
              f"| training time | {info['train_seconds']} s |"]
    if info.get("resumed_from"):
        lines.append(f"| resumed from | `{Path(info['resumed_from']).name}` |")
    lines += ["", "## Scores", ""]
    if info["dev"]:
        lines += _score_lines("Dev (final model)", info["dev"])
        if info["dev_per_epoch"]:
            lines += ["| epoch | step | dev macro-F1 | dev accuracy |", "|---|---|---|---|"]
            lines += [f"| {e['epoch']:.2f} | {e['step']} | {_fmt(e['macro_f1'])} | {_fmt(e['accuracy'])} |"
                      for e in info["dev_per_epoch"]]
            lines += ["", "The checkpoint with the best dev macro-F1 was kept.", ""]
    else:
        lines += ["No dev pairs were given: the last checkpoint was kept.", ""]
    if info["test"]:
        lines += _score_lines("Test (held out, scored once)", info["test"])
    lines += ["## Use", "", "```bash",
              "fewlabel zeroshot texts.csv --labels sports,politics --model THIS_FOLDER --out labels.csv",
              "fewlabel predict INDEX texts.csv --fallback nli --nli-model THIS_FOLDER --out labels.csv", "```", "",
              "```python", "from fewlabel.retrieval import NLIZeroShot",
              "NLIZeroShot(\"THIS_FOLDER\", labels=[\"sports\", \"politics\"]).predict([\"The match went to extra "
              "time.\"])", "```", ""]
    return "\n".join(lines)
