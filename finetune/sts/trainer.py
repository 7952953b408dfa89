"""Train STS heads with sentence-transformers' trainers (no hand-written loop).

- :func:`train_sts_cross_encoder`: ``CrossEncoder(base, num_labels=1)`` learns the pair's score scaled to
  0-1 with binary cross-entropy on the logit (the sentence-transformers STS recipe); each pair is also
  shown in the other order (``both_orders``) because the score is symmetric and a cross-encoder is not.
  Dev Pearson is measured every epoch by ``CrossEncoderCorrelationEvaluator`` and the best epoch's
  weights are kept (``load_best_model_at_end``).
- :func:`train_sts_bi_encoder`: the encoder itself learns with ``CosineSimilarityLoss`` (cosine ≈ score/5),
  and is saved as an encoder folder that :class:`fewlabel.indexing.Encoder` loads with the base's prefix and
  maximum length; fewlabel's default map ``5 * clip(cos, 0, 1)`` then fits it without calibration.

The output folder holds the model (``save_pretrained``), ``README.md`` (a model card: data, settings, dev
scores), ``training_log.jsonl`` (the trainer's log history, one JSON object a line) and
``fewlabel_model.json`` (``{"kind": "sts-cross-encoder", "scale": 5.0, ...}``), which is written last: a
folder without it is unfinished. Checkpoints go to ``OUT/checkpoints``; a run that finds one there (made
with the same data and settings) resumes from the latest, and they are removed after a successful run
unless ``keep_checkpoints``.

``binary_objective`` (cross-encoder only): adds ``binary_weight`` times a second binary cross-entropy on the
same single output, for the binary label (score >= 3) with the logit shifted so that its decision
boundary sits at 3/5. No second head: the one output still reads as a 0-5 score. It uses the trainers'
documented custom-loss contract (an ``nn.Module`` taking ``(inputs, labels)``) and logs both terms.

The job itself (checks, resume, record, card) is :class:`fewlabel.finetune.heads.HeadTrainer`'s."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fewlabel.finetune.heads import HeadTrainer, Job
from fewlabel.finetune.settings import RunOptions, TrainSettings
from fewlabel.indexing.hf import pick_device
from fewlabel.indexing.model_folder import MARKER_FILE, STS_BI_KIND, STS_CROSS_KIND
from fewlabel.indexing.sts.metrics import pair_metrics
from fewlabel.indexing.sts.pairs import BINARY_THRESHOLD, MAX_SCORE, PairRow
from fewlabel.indexing.sts.scoring import score_both_orders

__all__ = ["STS_BI_KIND", "STS_CROSS_KIND", "MARKER_FILE", "STSBiEncoder", "STSCrossEncoder", "pairs_fingerprint",
           "train_sts_bi_encoder", "train_sts_cross_encoder"]

DEV_NAME = "sts-dev"


# ---- public API --------------------------------------------------------------------------------------
def train_sts_cross_encoder(train_pairs: Sequence[PairRow], dev_pairs: Sequence[PairRow] | None, base: str,
                            out_dir: str | Path, settings: TrainSettings | None = None, *, both_orders: bool = True,
                            binary_objective: bool = False, binary_weight: float = 0.5,
                            run: RunOptions | None = None, sources: dict[str, str] | None = None) -> dict:
    """Fine-tune a cross-encoder STS head on ``base`` (registry name or folder) and save it to ``out_dir``.
    Returns a summary: output folder, dev scores (final model, both orders averaged), steps, seconds."""
    head = STSCrossEncoder(settings or TrainSettings(), run or RunOptions(), both_orders=both_orders,
                           binary_objective=binary_objective, binary_weight=binary_weight)
    return head.train(train_pairs, dev_pairs, base, out_dir, sources=sources)


def train_sts_bi_encoder(train_pairs: Sequence[PairRow], dev_pairs: Sequence[PairRow] | None, base: str,
                         out_dir: str | Path, settings: TrainSettings | None = None, *, run: RunOptions | None = None,
                         sources: dict[str, str] | None = None) -> dict:
    """Fine-tune the encoder ``base`` on STS pairs with ``CosineSimilarityLoss`` and save an encoder folder
    (with ``fewlabel_encoder.json``: the base's prefix and maximum length) to ``out_dir``."""
    head = STSBiEncoder(settings or TrainSettings(), run or RunOptions())
    return head.train(train_pairs, dev_pairs, base, out_dir, sources=sources)


def pairs_fingerprint(pairs: Sequence[PairRow]) -> str:
    """What a run was trained on, in 16 hex digits: resume and reuse only with the same pairs."""
    return STSCrossEncoder.fingerprint(pairs)


# ---- the heads ----------------------------------------------------------------------------------------
class _STSHead(HeadTrainer[PairRow]):
    """What both STS heads share: scored pairs, dev Pearson picks the best epoch, no test data."""

    roles = ("train", "dev")
    dev_name = DEV_NAME
    epoch_columns = {"dev Pearson": "pearson"}
    best_text = "Pearson"
    scores_title = "Dev scores"
    use_shell = ["fewlabel sts score pairs.csv --model THIS_FOLDER --out scores.csv"]
    use_python = ["from fewlabel.retrieval import STSScorer",
                  "STSScorer(\"THIS_FOLDER\").predict([(\"sentence one\", \"sentence two\")])"]

    def problem(self, pair: PairRow, role: str) -> tuple[str, str] | None:
        return None if pair.score is not None else (f"{role} pairs must carry scores (pair '{pair.id}' has none)",
                                                    "score")

    @staticmethod
    def fingerprint_fields(pair: PairRow) -> list:
        return [pair.sentence1, pair.sentence2, pair.score, pair.binary]

    def score_block(self, title: str, scores: dict, info: dict) -> list[str]:
        how = "both orders averaged" if info["kind"] == STS_CROSS_KIND else "cosine"
        return [f"Final model ({how}): Pearson {self.fmt(scores['pearson'])}, Spearman {self.fmt(scores['spearman'])}, "
                f"binary F1 (threshold 3) {self.fmt(scores['binary_f1'])} on {scores['n']:,} pairs.", ""]


class STSCrossEncoder(_STSHead):
    """``CrossEncoder(base, num_labels=1)``: BCE on score/5, each pair also in the other order (``both_orders``),
    optionally a second BCE term for the binary label (``binary_objective``)."""

    kind = STS_CROSS_KIND
    title = "STS cross-encoder"
    primary = "pearson"
    epoch_metrics = {"pearson": "pearson"}

    def __init__(self, settings: TrainSettings, run: RunOptions, *, both_orders: bool = True,
                 binary_objective: bool = False, binary_weight: float = 0.5) -> None:
        super().__init__(settings, run)
        self.binary_weight = float(binary_weight)
        self.extra = {"both_orders": both_orders, "binary_objective": binary_objective,
                      "binary_weight": binary_weight if binary_objective else None}

    def resume_options(self) -> dict:
        return self.extra

    def new_model(self, job: Job[PairRow]):
        from sentence_transformers.cross_encoder import CrossEncoder

        return CrossEncoder(job.location, num_labels=1, max_length=self.settings.max_length,
                            device=pick_device(self.run.device), local_files_only=True)

    def trainer(self, model, job: Job[PairRow]):
        from datasets import Dataset
        from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
        from sentence_transformers.cross_encoder.evaluation import CrossEncoderCorrelationEvaluator
        from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

        train, dev = job.train, job.dev
        first = [p.sentence1 for p in train]
        second = [p.sentence2 for p in train]
        targets: list = [_gold(p)[0] / MAX_SCORE for p in train]
        if self.extra["binary_objective"]:
            targets = [[_gold(p)[0] / MAX_SCORE, float(_gold(p)[1])] for p in train]
        if self.extra["both_orders"]:
            first, second, targets = first + second, second + first, targets + targets
        dataset = Dataset.from_dict({"sentence1": first, "sentence2": second, "label": targets})
        loss = (sts_binary_aux_loss(model, weight=self.binary_weight) if self.extra["binary_objective"]
                else BinaryCrossEntropyLoss(model))
        evaluator = (CrossEncoderCorrelationEvaluator([[p.sentence1, p.sentence2] for p in dev],
                                                      [_gold(p)[0] for p in dev], name=self.dev_name,
                                                      batch_size=self.settings.batch_size, show_progress_bar=False)
                     if dev else None)
        args = CrossEncoderTrainingArguments(**self.args(job, len(dataset)))
        return CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss, evaluator=evaluator)

    def score(self, model, pairs: list[PairRow]) -> dict:
        predicted = MAX_SCORE * score_both_orders(model, [p.sentence1 for p in pairs], [p.sentence2 for p in pairs],
                                                  batch_size=self.settings.batch_size)
        scores = pair_metrics(pairs, predicted)
        assert scores is not None  # the pairs are labelled: the head's check refused any without a score
        return scores

    def head_record(self, job: Job[PairRow]) -> dict:
        return {"scale": MAX_SCORE, "max_length": self.settings.max_length, "both_orders_at_scoring": True,
                "output": "sigmoid(logit) * scale"}

    def method_record(self, job: Job[PairRow]) -> dict:
        return self.extra

    def about(self, info: dict) -> str:
        return ("It reads both sentences together and outputs a similarity: sigmoid(logit) x 5 is the 0-5 score; "
                "fewlabel averages both sentence orders.")

    def role_note(self, info: dict, role: str) -> str:
        return ", each also in the other sentence order" if role == "train" and info.get("both_orders") else ""

    def setting_rows(self, info: dict) -> list[tuple[str, object]]:
        objective = "BCE on score/5" + (f" + {info['binary_weight']} x BCE on the binary label (score >= 3)"
                                        if info.get("binary_objective") else "")
        return [("objective", objective)]


class STSBiEncoder(_STSHead):
    """The encoder itself with ``CosineSimilarityLoss`` (cosine ≈ score/5), saved as an encoder folder."""

    kind = STS_BI_KIND
    title = "STS bi-encoder"
    loads_as = "an encoder"
    primary = "pearson_cosine"
    epoch_metrics = {"pearson": "pearson_cosine"}

    def prefix(self, job: Job[PairRow]) -> str:
        return job.base_info["prefix"] or ""  # added to the texts, as Encoder does, so training sees what scoring sees

    def new_model(self, job: Job[PairRow]):
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(job.location, device=pick_device(self.run.device), local_files_only=True)
        model.max_seq_length = self.settings.max_length
        return model

    def trainer(self, model, job: Job[PairRow]):
        from datasets import Dataset
        from sentence_transformers import SentenceTransformerTrainer
        from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
        from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
        from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

        train, dev, prefix = job.train, job.dev, self.prefix(job)
        dataset = Dataset.from_dict({"sentence1": [prefix + p.sentence1 for p in train],
                                     "sentence2": [prefix + p.sentence2 for p in train],
                                     "label": [_gold(p)[0] / MAX_SCORE for p in train]})
        evaluator = (EmbeddingSimilarityEvaluator([prefix + p.sentence1 for p in dev],
                                                  [prefix + p.sentence2 for p in dev],
                                                  [_gold(p)[0] / MAX_SCORE for p in dev],
                                                  batch_size=self.settings.batch_size,
                                                  similarity_fn_names=["cosine"], name=self.dev_name)
                     if dev else None)
        args = SentenceTransformerTrainingArguments(**self.args(job, len(dataset)))
        return SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset,
                                          loss=CosineSimilarityLoss(model), evaluator=evaluator)

    def save(self, model, job: Job[PairRow]) -> None:
        super().save(model, job)
        (job.out / "fewlabel_encoder.json").write_text(json.dumps(
            {"prefix": self.prefix(job), "max_length": self.encoder_max(job), "pooling": "mean",
             "source": f"fine-tuned from {job.base_info['name']} on STS pairs (CosineSimilarityLoss) by fewlabel"},
            indent=2) + "\n", encoding="utf-8")
        self.folder = job.out

    def encoder_max(self, job: Job[PairRow]) -> int:
        return int(job.base_info["max_length"] or self.settings.max_length)

    def score(self, model, pairs: list[PairRow]) -> dict:
        scores = pair_metrics(pairs, _bi_predict(self.folder, pairs, self.settings.batch_size, self.run.device))
        assert scores is not None  # the pairs are labelled: the head's check refused any without a score
        return scores

    def head_record(self, job: Job[PairRow]) -> dict:
        return {"prefix": self.prefix(job), "max_length": self.encoder_max(job),
                "trained_max_length": self.settings.max_length,
                "output": "5 * clip(cosine, 0, 1) of mean-pooled, normalised embeddings"}

    def about(self, info: dict) -> str:
        return (f"An encoder: the 0-5 score is 5 x clip(cosine, 0, 1) of mean-pooled, L2-normalised embeddings "
                f"(prefix {info['prefix']!r}).")

    def setting_rows(self, info: dict) -> list[tuple[str, object]]:
        return [("objective", "CosineSimilarityLoss (MSE of cosine vs score/5)")]


# ---- the optional binary objective ----------------------------------------------------------------------
def _binary_aux_loss_class():
    import torch
    from torch import nn

    class _STSBinaryAuxLoss(nn.Module):
        """BCE(logit, score/5) + weight * BCE(logit - log(0.6/0.4), binary): one output, two targets."""

        def __init__(self, model, weight: float = 0.5) -> None:
            super().__init__()
            self.model = model
            self.weight = float(weight)
            self.shift = math.log((BINARY_THRESHOLD / MAX_SCORE) / (1 - BINARY_THRESHOLD / MAX_SCORE))
            self.bce = nn.BCEWithLogitsLoss()

        def forward(self, inputs, labels, prompt=None, task=None) -> dict:
            from sentence_transformers.util import batch_to_device

            features = self.model.preprocess(list(zip(inputs[0], inputs[1], strict=True)), prompt=prompt, task=task)
            logits = self.model(batch_to_device(features, self.model.device))["scores"].view(-1)
            target = torch.stack(list(labels)) if isinstance(labels, (list, tuple)) else labels
            target = target.to(logits.device).float().view(-1, 2)
            return {"score": self.bce(logits, target[:, 0]),
                    "binary": self.weight * self.bce(logits - self.shift, target[:, 1])}

        def get_config_dict(self) -> dict:
            return {"weight": self.weight, "boundary": BINARY_THRESHOLD / MAX_SCORE}

    return _STSBinaryAuxLoss


def sts_binary_aux_loss(model, weight: float = 0.5):
    """The loss for `binary_objective` (its class is made lazily, so torch loads only when training)."""
    return _binary_aux_loss_class()(model, weight)


# ---- helpers --------------------------------------------------------------------------------------------
def _bi_predict(folder: Path, pairs: Sequence[PairRow], batch_size: int, device: str | None) -> np.ndarray:
    """Score dev pairs the way fewlabel will: `Encoder` on the saved folder (which also proves it loads)."""
    from fewlabel.indexing.encoders.encoder import Encoder

    encoder = Encoder(str(folder), device=device)
    a = encoder.encode([p.sentence1 for p in pairs], batch_size=batch_size)
    b = encoder.encode([p.sentence2 for p in pairs], batch_size=batch_size)
    return MAX_SCORE * np.clip(np.einsum("ij,ij->i", a, b), 0.0, 1.0)


def _gold(pair: PairRow) -> tuple[float, int]:
    """The score and binary label of a pair that the head's check let through (the reader sets both or neither)."""
    assert pair.score is not None and pair.binary is not None
    return pair.score, pair.binary
