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
documented custom-loss contract (an ``nn.Module`` taking ``(inputs, labels)``) and logs both terms."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fewlabel.finetune.runs import (
    finish_run,
    freeze_word_embeddings,
    prepare_out,
    quiet_trainer,
    resumable_settings,
    resume_point,
    trainer_args,
)
from fewlabel.finetune.settings import TrainSettings, resolve_base
from fewlabel.indexing.errors import DataError, ModelError, first_line
from fewlabel.indexing.hf import pick_device, quiet_hf
from fewlabel.indexing.model_folder import MARKER_FILE, STS_BI_KIND, STS_CROSS_KIND
from fewlabel.indexing.sts.metrics import pair_metrics
from fewlabel.indexing.sts.pairs import BINARY_THRESHOLD, MAX_SCORE, PairRow
from fewlabel.indexing.sts.scoring import score_both_orders

__all__ = ["STS_BI_KIND", "STS_CROSS_KIND", "MARKER_FILE", "train_sts_bi_encoder", "train_sts_cross_encoder"]

DEV_NAME = "sts-dev"


# ---- public API --------------------------------------------------------------------------------------
def train_sts_cross_encoder(train_pairs: Sequence[PairRow], dev_pairs: Sequence[PairRow] | None, base: str,
                            out_dir: str | Path, *, epochs: float = 2, lr: float = 2e-5, batch_size: int = 16,
                            max_length: int = 128, warmup_ratio: float = 0.1, seed: int = 42,
                            both_orders: bool = True, binary_objective: bool = False, binary_weight: float = 0.5,
                            resume: bool = True, max_steps: int | None = None, device: str | None = None,
                            show_progress: bool = True, keep_checkpoints: bool = False,
                            sources: dict[str, str] | None = None, freeze_embeddings: bool = False) -> dict:
    """Fine-tune a cross-encoder STS head on ``base`` (registry name or folder) and save it to ``out_dir``.
    Returns a summary: output folder, dev scores (final model, both orders averaged), steps, seconds."""
    settings = TrainSettings(epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length,
                             warmup_ratio=warmup_ratio, seed=seed, max_steps=max_steps,
                             freeze_embeddings=freeze_embeddings)
    train, dev = _check_pairs(train_pairs, "train"), _check_pairs(dev_pairs, "dev") if dev_pairs else []
    location, base_info = resolve_base(base)
    out, ckpt_dir = prepare_out(out_dir)
    extra = {"both_orders": both_orders, "binary_objective": binary_objective,
             "binary_weight": binary_weight if binary_objective else None}
    resume_from = _resume_point(ckpt_dir, STS_CROSS_KIND, base_info, settings, extra, train, dev, resume)

    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderCorrelationEvaluator
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import set_seed

    started = time.perf_counter()
    set_seed(settings.seed)  # the new classifier head's initial weights
    with quiet_hf():
        try:
            model = CrossEncoder(location, num_labels=1, max_length=settings.max_length, device=pick_device(device),
                                 local_files_only=True)
        except Exception as exc:
            raise ModelError(f"cannot load base model '{base}' as a cross-encoder: {first_line(exc)}") from exc
    if settings.freeze_embeddings:
        freeze_word_embeddings(model)

    first = [p.sentence1 for p in train]
    second = [p.sentence2 for p in train]
    targets: list = [_gold(p)[0] / MAX_SCORE for p in train]
    if binary_objective:
        targets = [[_gold(p)[0] / MAX_SCORE, float(_gold(p)[1])] for p in train]
    if both_orders:
        first, second, targets = first + second, second + first, targets + targets
    dataset = Dataset.from_dict({"sentence1": first, "sentence2": second, "label": targets})
    loss = sts_binary_aux_loss(model, weight=binary_weight) if binary_objective else BinaryCrossEntropyLoss(model)
    evaluator = (CrossEncoderCorrelationEvaluator([[p.sentence1, p.sentence2] for p in dev],
                                                  [_gold(p)[0] for p in dev], name=DEV_NAME,
                                                  batch_size=settings.batch_size, show_progress_bar=False)
                 if dev else None)
    args = CrossEncoderTrainingArguments(**trainer_args(ckpt_dir, settings, len(dataset), bool(dev), device,
                                                         show_progress, metric=f"eval_{DEV_NAME}_pearson"))
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss, evaluator=evaluator)
    quiet_trainer(trainer, show_progress)
    trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - started

    model.save_pretrained(str(out), create_model_card=False)
    dev_scores = None
    if dev:
        predicted = MAX_SCORE * score_both_orders(model, [p.sentence1 for p in dev], [p.sentence2 for p in dev],
                                                  batch_size=settings.batch_size)
        dev_scores = pair_metrics(dev, predicted)
    info = {"kind": STS_CROSS_KIND, "scale": MAX_SCORE, "max_length": settings.max_length,
            "both_orders_at_scoring": True,
            "output": "sigmoid(logit) * scale", **_common_info(base_info, settings, extra, train, dev, trainer,
                                                                  dev_scores, seconds, resume_from, sources)}
    out = _finish(out, ckpt_dir, trainer, info, keep_checkpoints)
    return {"out_dir": str(out), **{k: info[k] for k in ("dev", "steps", "train_seconds", "resumed_from")}}


def train_sts_bi_encoder(train_pairs: Sequence[PairRow], dev_pairs: Sequence[PairRow] | None, base: str,
                         out_dir: str | Path, *, epochs: float = 2, lr: float = 2e-5, batch_size: int = 16,
                         max_length: int = 128, warmup_ratio: float = 0.1, seed: int = 42, resume: bool = True,
                         max_steps: int | None = None, device: str | None = None, show_progress: bool = True,
                         keep_checkpoints: bool = False, sources: dict[str, str] | None = None) -> dict:
    """Fine-tune the encoder ``base`` on STS pairs with ``CosineSimilarityLoss`` and save an encoder folder
    (with ``fewlabel_encoder.json``: the base's prefix and maximum length) to ``out_dir``."""
    settings = TrainSettings(epochs=epochs, lr=lr, batch_size=batch_size, max_length=max_length,
                             warmup_ratio=warmup_ratio, seed=seed, max_steps=max_steps)
    train, dev = _check_pairs(train_pairs, "train"), _check_pairs(dev_pairs, "dev") if dev_pairs else []
    location, base_info = resolve_base(base)
    out, ckpt_dir = prepare_out(out_dir)
    resume_from = _resume_point(ckpt_dir, STS_BI_KIND, base_info, settings, {}, train, dev, resume)

    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
    from transformers import set_seed

    started = time.perf_counter()
    set_seed(settings.seed)
    with quiet_hf():
        try:
            model = SentenceTransformer(location, device=pick_device(device), local_files_only=True)
        except Exception as exc:
            raise ModelError(f"cannot load base model '{base}' as an encoder: {first_line(exc)}") from exc
    model.max_seq_length = settings.max_length
    prefix = base_info["prefix"] or ""  # added to the texts, as Encoder does, so training sees what scoring sees
    dataset = Dataset.from_dict({"sentence1": [prefix + p.sentence1 for p in train],
                                 "sentence2": [prefix + p.sentence2 for p in train],
                                 "label": [_gold(p)[0] / MAX_SCORE for p in train]})
    evaluator = (EmbeddingSimilarityEvaluator([prefix + p.sentence1 for p in dev], [prefix + p.sentence2 for p in dev],
                                              [_gold(p)[0] / MAX_SCORE for p in dev], batch_size=settings.batch_size,
                                              similarity_fn_names=["cosine"], name=DEV_NAME)
                 if dev else None)
    args = SentenceTransformerTrainingArguments(**trainer_args(ckpt_dir, settings, len(dataset), bool(dev), device,
                                                                show_progress,
                                                                metric=f"eval_{DEV_NAME}_pearson_cosine"))
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset,
                                         loss=CosineSimilarityLoss(model), evaluator=evaluator)
    quiet_trainer(trainer, show_progress)
    trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - started

    model.save_pretrained(str(out), create_model_card=False)
    encoder_max = int(base_info["max_length"] or settings.max_length)
    (out / "fewlabel_encoder.json").write_text(json.dumps(
        {"prefix": prefix, "max_length": encoder_max, "pooling": "mean",
         "source": f"fine-tuned from {base_info['name']} on STS pairs (CosineSimilarityLoss) by fewlabel"},
        indent=2) + "\n", encoding="utf-8")
    dev_scores = pair_metrics(dev, _bi_predict(out, dev, settings.batch_size, device)) if dev else None
    info = {"kind": STS_BI_KIND, "prefix": prefix, "max_length": encoder_max, "trained_max_length": settings.max_length,
            "output": "5 * clip(cosine, 0, 1) of mean-pooled, normalised embeddings",
            **_common_info(base_info, settings, {}, train, dev, trainer, dev_scores, seconds, resume_from, sources)}
    out = _finish(out, ckpt_dir, trainer, info, keep_checkpoints)
    return {"out_dir": str(out), **{k: info[k] for k in ("dev", "steps", "train_seconds", "resumed_from")}}


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
def _gold(pair: PairRow) -> tuple[float, int]:
    """The score and binary label of a pair that `_check_pairs` let through (the reader sets both or neither)."""
    assert pair.score is not None and pair.binary is not None
    return pair.score, pair.binary


def _check_pairs(pairs: Sequence[PairRow] | None, role: str) -> list[PairRow]:
    pairs = list(pairs or [])
    if not pairs:
        raise DataError(f"no {role} pairs")
    unlabelled = next((p for p in pairs if p.score is None), None)
    if unlabelled is not None:
        raise DataError(f"{role} pairs must carry scores (pair '{unlabelled.id}' has none)",
                        line=unlabelled.line, field="score")
    return pairs


def pairs_fingerprint(pairs: Sequence[PairRow]) -> str:
    """What a run was trained on, in 16 hex digits: resume and reuse only with the same pairs."""
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p.sentence1, p.sentence2, p.score, p.binary], ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def _resume_point(ckpt_dir: Path, kind: str, base_info: dict, settings: TrainSettings, extra: dict,
                  train: list[PairRow], dev: list[PairRow], resume: bool) -> str | None:
    """The checkpoint to resume from (see `fewlabel.finetune.runs.resume_point`)."""
    run = {"kind": kind, "base": base_info["name"], **extra, "train": pairs_fingerprint(train),
           "dev": pairs_fingerprint(dev), "settings": resumable_settings(settings)}
    return resume_point(ckpt_dir, run, resume)


def _bi_predict(folder: Path, pairs: Sequence[PairRow], batch_size: int, device: str | None) -> np.ndarray:
    """Score dev pairs the way fewlabel will: `Encoder` on the saved folder (which also proves it loads)."""
    from fewlabel.indexing.encoders.encoder import Encoder

    encoder = Encoder(str(folder), device=device)
    a = encoder.encode([p.sentence1 for p in pairs], batch_size=batch_size)
    b = encoder.encode([p.sentence2 for p in pairs], batch_size=batch_size)
    return MAX_SCORE * np.clip(np.einsum("ij,ij->i", a, b), 0.0, 1.0)


def _common_info(base_info: dict, settings: TrainSettings, extra: dict, train: list[PairRow], dev: list[PairRow],
                 trainer, dev_scores: dict | None, seconds: float, resume_from: str | None,
                 sources: dict[str, str] | None) -> dict:
    import sentence_transformers
    import transformers

    per_epoch = [{"epoch": e.get("epoch"), "step": e.get("step"),
                  "pearson": next((v for k, v in e.items() if k.startswith(f"eval_{DEV_NAME}_pearson")), None)}
                 for e in trainer.state.log_history if any(k.startswith(f"eval_{DEV_NAME}_") for k in e)]
    return {"base": base_info["name"], "settings": settings.to_dict(), **extra,
            "data": {"train_pairs": len(train), "dev_pairs": len(dev), "train_fingerprint": pairs_fingerprint(train),
                     **({"sources": sources} if sources else {})},
            "dev": dev_scores, "dev_per_epoch": per_epoch, "best_checkpoint_metric": trainer.state.best_metric,
            "steps": int(trainer.state.global_step), "train_seconds": round(seconds, 1), "resumed_from": resume_from,
            "trained_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "versions": {"sentence_transformers": sentence_transformers.__version__,
                         "transformers": transformers.__version__}}


def _finish(out: Path, ckpt_dir: Path, trainer, info: dict, keep_checkpoints: bool) -> Path:
    return finish_run(out, ckpt_dir, trainer, info, model_card=_model_card(info),
                      keep_checkpoints=keep_checkpoints)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _model_card(info: dict) -> str:
    cross = info["kind"] == STS_CROSS_KIND
    title = "STS cross-encoder" if cross else "STS bi-encoder"
    s, data, dev = info["settings"], info["data"], info["dev"]
    lines = [f"# fewlabel {title}", "",
             f"Fine-tuned from `{info['base']}` by fewlabel ({info['trained_at']}) with sentence-transformers "
             f"{info['versions']['sentence_transformers']}.",
             "",
             ("It reads both sentences together and outputs a similarity: sigmoid(logit) x 5 is the 0-5 score; "
              "fewlabel averages both sentence orders." if cross else
              f"An encoder: the 0-5 score is 5 x clip(cosine, 0, 1) of mean-pooled, L2-normalised embeddings "
              f"(prefix {info['prefix']!r})."),
             "", "## Data", "",
             f"- train: {data['train_pairs']:,} pairs" + (", each also in the other sentence order"
                                                          if info.get("both_orders") else ""),
             f"- dev: {data['dev_pairs']:,} pairs"]
    for role, path in (data.get("sources") or {}).items():
        lines.append(f"- {role} file: `{path}`")
    lines += ["", "## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in s.items()]
    objective = ("BCE on score/5" + (f" + {info['binary_weight']} x BCE on the binary label (score >= 3)"
                                     if info.get("binary_objective") else "")
                 if cross else "CosineSimilarityLoss (MSE of cosine vs score/5)")
    lines += [f"| objective | {objective} |", f"| steps | {info['steps']} |",
              f"| training time | {info['train_seconds']} s |"]
    if info.get("resumed_from"):
        lines.append(f"| resumed from | `{Path(info['resumed_from']).name}` |")
    lines += ["", "## Dev scores", ""]
    if dev:
        lines += [f"Final model ({'both orders averaged' if cross else 'cosine'}): Pearson {_fmt(dev['pearson'])}, "
                  f"Spearman {_fmt(dev['spearman'])}, binary F1 (threshold 3) {_fmt(dev['binary_f1'])} "
                  f"on {dev['n']:,} pairs.", ""]
        if info["dev_per_epoch"]:
            lines += ["| epoch | step | dev Pearson |", "|---|---|---|"]
            lines += [f"| {e['epoch']:.2f} | {e['step']} | {_fmt(e['pearson'])} |" for e in info["dev_per_epoch"]]
            lines.append("")
            lines.append("The checkpoint with the best dev Pearson was kept.")
    else:
        lines.append("No dev pairs were given: the last checkpoint was kept.")
    lines += ["", "## Use", "", "```bash", "fewlabel sts score pairs.csv --model THIS_FOLDER --out scores.csv", "```",
              "", "```python", "from fewlabel.retrieval import STSScorer",
              "STSScorer(\"THIS_FOLDER\").predict([(\"sentence one\", \"sentence two\")])", "```", ""]
    return "\n".join(lines)
