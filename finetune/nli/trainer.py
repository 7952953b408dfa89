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
The job itself (checks, resume, record, card) is :class:`fewlabel.finetune.heads.HeadTrainer`'s."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fewlabel.finetune.heads import HeadTrainer, Job
from fewlabel.finetune.settings import RunOptions, TrainSettings
from fewlabel.indexing.hf import pick_device
from fewlabel.indexing.model_folder import NLI_KIND
from fewlabel.indexing.nli.data import NLI_LABELS, NLIPair

__all__ = ["ID2LABEL", "NLIHead", "nli_metrics", "train_nli_cross_encoder"]

ID2LABEL = dict(enumerate(NLI_LABELS))  # 0 entailment, 1 neutral, 2 contradiction (the GLUE-MNLI order)
LABEL2ID = {name: i for i, name in ID2LABEL.items()}


def train_nli_cross_encoder(train_pairs: Sequence[NLIPair], dev_pairs: Sequence[NLIPair] | None, base: str,
                            out_dir: str | Path, settings: TrainSettings | None = None, *,
                            test_pairs: Sequence[NLIPair] | None = None, run: RunOptions | None = None,
                            sources: dict[str, str] | None = None) -> dict:
    """Fine-tune an NLI head on ``base`` (registry name or folder) and save it to ``out_dir``. Returns a
    summary: output folder, dev and test scores, steps, seconds, where it resumed from."""
    head = NLIHead(settings or TrainSettings(), run or RunOptions())
    return head.train(train_pairs, dev_pairs, base, out_dir, test=test_pairs, sources=sources)


class NLIHead(HeadTrainer[NLIPair]):
    """``CrossEncoder(base, num_labels=3)`` with ``CrossEntropyLoss``; dev macro-F1 picks the best epoch."""

    kind = NLI_KIND
    title = "NLI cross-encoder"
    timed = ("test",)
    dev_name = "nli-dev"
    primary = "f1_macro"
    epoch_metrics = {"macro_f1": "f1_macro", "accuracy": "f1_micro"}
    epoch_columns = {"dev macro-F1": "macro_f1", "dev accuracy": "accuracy"}
    best_text = "macro-F1"
    source_suffix = ""
    use_shell = ["fewlabel zeroshot texts.csv --labels sports,politics --model THIS_FOLDER --out labels.csv",
                 "fewlabel predict INDEX texts.csv --fallback nli --nli-model THIS_FOLDER --out labels.csv"]
    use_python = ["from fewlabel.retrieval import NLIZeroShot",
                  "NLIZeroShot(\"THIS_FOLDER\", labels=[\"sports\", \"politics\"]).predict([\"The match went to extra "
                  "time.\"])"]

    def problem(self, pair: NLIPair, role: str) -> tuple[str, str] | None:
        if pair.label in LABEL2ID:
            return None
        return (f"{role} pairs must carry a label ({', '.join(NLI_LABELS)}); pair '{pair.id}' has {pair.label!r}",
                "label")

    @staticmethod
    def fingerprint_fields(pair: NLIPair) -> list:
        return [pair.premise, pair.hypothesis, pair.label]

    def new_model(self, job: Job[NLIPair]):
        from sentence_transformers.cross_encoder import CrossEncoder

        return CrossEncoder(job.location, num_labels=len(NLI_LABELS), max_length=self.settings.max_length,
                            device=pick_device(self.run.device), local_files_only=True,
                            config_kwargs={"id2label": ID2LABEL, "label2id": LABEL2ID})

    def trainer(self, model, job: Job[NLIPair]):
        from datasets import Dataset
        from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
        from sentence_transformers.cross_encoder.evaluation import CrossEncoderClassificationEvaluator
        from sentence_transformers.cross_encoder.losses import CrossEntropyLoss

        train, dev = job.train, job.dev
        dataset = Dataset.from_dict({"premise": [p.premise for p in train],
                                     "hypothesis": [p.hypothesis for p in train],
                                     "label": [LABEL2ID[_label_of(p)] for p in train]})
        evaluator = (CrossEncoderClassificationEvaluator([[p.premise, p.hypothesis] for p in dev],
                                                         [LABEL2ID[_label_of(p)] for p in dev], name=self.dev_name,
                                                         batch_size=self.settings.batch_size,
                                                         show_progress_bar=False, write_csv=False)
                     if dev else None)
        args = CrossEncoderTrainingArguments(**self.args(job, len(dataset)))
        return CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=CrossEntropyLoss(model),
                                   evaluator=evaluator)

    def score(self, model, pairs: list[NLIPair]) -> dict:
        return nli_metrics(predict_classes(model, pairs, self.settings.batch_size), pairs)

    def class_counts(self, pairs: list[NLIPair]) -> dict:
        return {name: sum(1 for p in pairs if p.label == name) for name in NLI_LABELS}

    def head_record(self, job: Job[NLIPair]) -> dict:
        return {"id2label": {str(k): v for k, v in ID2LABEL.items()}, "max_length": self.settings.max_length}

    def method_record(self, job: Job[NLIPair]) -> dict:
        return {"objective": "cross-entropy over 3 classes"}

    # ---- the card ------------------------------------------------------------------------------------------
    def about(self, info: dict) -> str:
        return ("It reads a premise and a hypothesis together and outputs three logits. Their order is in "
                "`config.json` (`id2label`): " + ", ".join(f"{k} {v}" for k, v in info["id2label"].items()) + ".\n"
                "fewlabel reads the order from there, as it does for any NLI checkpoint.")

    def role_note(self, info: dict, role: str) -> str:
        classes = info["data"]["train_classes"]
        return " (" + ", ".join(f"{k} {v:,}" for k, v in classes.items()) + ")" if role == "train" else ""

    def score_block(self, title: str, scores: dict, info: dict) -> list[str]:
        fmt = self.fmt
        lines = [f"### {title}", "", f"Accuracy {fmt(scores['accuracy'])}, macro-F1 {fmt(scores['macro_f1'])} on "
                 f"{scores['n']:,} pairs.", "", "| class | precision | recall | F1 | support |",
                 "|---|---|---|---|---|"]
        lines += [f"| {c} | {fmt(v['precision'])} | {fmt(v['recall'])} | {fmt(v['f1'])} | {v['support']:,} |"
                  for c, v in scores["per_class"].items()]
        return lines + [""]


def nli_fingerprint(pairs: Sequence[NLIPair]) -> str:
    """The train fingerprint of an NLI head's record (benchmarks reuse a head trained on the same pairs)."""
    return NLIHead.fingerprint(pairs)


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


def _label_of(pair: NLIPair) -> str:
    """The label of a pair that the head's check let through (it refuses unlabelled ones)."""
    assert pair.label is not None
    return pair.label
