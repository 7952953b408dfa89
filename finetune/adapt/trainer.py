"""Adapt an encoder to unlabelled in-domain texts with maintained training code only (no hand-written loop).

Three methods (``method``):

- ``simcse``: unsupervised SimCSE. Each text is paired with itself, and sentence-transformers'
  ``MultipleNegativesRankingLoss`` pulls the two dropout views of a text together and pushes the other texts of
  the batch away (scale 20 = SimCSE's temperature 0.05). The pool is de-duplicated first, since a duplicate in
  a batch would be a false negative.
- ``tsdae``: sentence-transformers' ``DenoisingAutoEncoderLoss``: the encoder embeds a text with 60% of its
  words deleted (:func:`fewlabel.indexing.augment.Augmenter`-style deletion, seeded) and a decoder reconstructs
  the text from that one vector. The decoder is built from the encoder's *own* folder and config
  (``tie_encoder_decoder=True``: ``AutoModelForCausalLM`` on the same checkpoint, its weights shared with the
  encoder), so nothing is downloaded; its cross-attention layers and LM-head transform are new and start
  random.
- ``mlm``: the book's method, masked-language modelling with transformers' ``DataCollatorForLanguageModeling``
  (15% of tokens) and ``Trainer`` on ``AutoModelForMaskedLM`` of the encoder's folder. The bundled encoders are
  sentence-embedding checkpoints saved without their MLM head: the head's output matrix is tied to the word
  embeddings, but its dense transform and layer norm are initialised at random, so the first steps train a
  head rather than adapt the encoder, the gradients the encoder gets early on come through a random layer, and
  the starting loss is near that of guessing (the card records the first and last logged loss and the new
  head weights). Only the encoder's weights are kept.

The encoder is always trained behind mean pooling, the pooling :class:`fewlabel.indexing.Encoder` uses, with the
base's prefix (e5's ``"query: "``) on every text. The output folder is a sentence-transformers folder plus
``fewlabel_encoder.json`` (prefix, maximum length, pooling), so ``Encoder(folder)``, ``index build --model``,
``bench slices --encoders`` and ``finetune … --base`` all take it. It also holds ``README.md`` (a model card:
data, method, steps, wall and CPU time), ``training_log.jsonl`` and ``fewlabel_model.json`` (kind
``adapted-encoder``), written last."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from fewlabel.finetune import runs  # the run workflow every trainer shares (finetune/heads.py too)
from fewlabel.finetune.adapt.card import model_card
from fewlabel.finetune.settings import RunOptions, TrainSettings, resolve_base
from fewlabel.indexing.augment import Augmenter
from fewlabel.indexing.encoders.encoder import transformer_folder
from fewlabel.indexing.errors import DataError, InvalidArgumentError, ModelError, first_line
from fewlabel.indexing.hf import pick_device, quiet_hf
from fewlabel.indexing.model_folder import ADAPT_KIND

if TYPE_CHECKING:
    from torch.nn import Module
    from transformers import Trainer

__all__ = ["ADAPT_METHODS", "ADAPT_SETTINGS", "adapt_encoder", "prepare_pool"]

ADAPT_METHODS = ("simcse", "tsdae", "mlm")
TSDAE_DELETION = 0.6  # the TSDAE paper's deletion ratio
MLM_PROBABILITY = 0.15
LOSSES = {"simcse": "MultipleNegativesRankingLoss on two dropout views of each text (unsupervised SimCSE)",
          "tsdae": f"DenoisingAutoEncoderLoss ({TSDAE_DELETION:.0%} of words deleted; decoder tied to the encoder)",
          "mlm": f"masked-LM cross-entropy (DataCollatorForLanguageModeling, {MLM_PROBABILITY:.0%} of tokens)"}


def prepare_pool(texts: Sequence[str], *, max_texts: int | None = None, seed: int = 42) -> tuple[list[str], dict]:
    """The texts to train on: stripped, empty ones dropped, de-duplicated (first occurrence kept), then at most
    ``max_texts`` of them drawn at random with ``seed``. Returns them and the counts for the card."""
    cleaned = [t.strip() for t in texts]
    unique = list(dict.fromkeys(t for t in cleaned if t))
    used = unique
    if max_texts is not None:
        if max_texts < 2:
            raise InvalidArgumentError(f"--max-texts must be >= 2 (got {max_texts})")
        if len(unique) > max_texts:
            used = random.Random(seed).sample(unique, max_texts)
    if len(used) < 2:
        raise DataError(f"adaptation needs at least 2 distinct non-empty texts (got {len(used)})")
    counts = {"texts_read": len(cleaned), "empty": sum(1 for t in cleaned if not t),
              "duplicates": sum(1 for t in cleaned if t) - len(unique), "texts_used": len(used),
              "fingerprint": hashlib.sha256("\x1e".join(used).encode()).hexdigest()[:16]}
    return used, counts


#: Adaptation's default training settings: one epoch at a higher rate than the supervised heads.
ADAPT_SETTINGS = TrainSettings(epochs=1, lr=3e-5)


def adapt_encoder(texts: Sequence[str], base: str, out_dir: str | Path, settings: TrainSettings = ADAPT_SETTINGS, *,
                  method: str = "simcse", max_texts: int | None = None, run: RunOptions | None = None,
                  source: str | None = None) -> dict:
    """Adapt ``base`` (registry name or folder) to ``texts`` by ``method`` and save an encoder folder to
    ``out_dir``. Returns a summary: output folder, steps, wall and CPU seconds, first and last logged loss.
    ``settings.freeze_embeddings`` keeps the word-embedding matrix fixed (most of e5-small's weights and, on a CPU,
    most of a step's optimiser work); ``max_texts`` caps the pool with a sample seeded by ``settings.seed``."""
    run = run or RunOptions()
    device, show_progress = run.device, run.show_progress
    if method not in ADAPT_METHODS:
        raise InvalidArgumentError(f"unknown adaptation method '{method}' (choose from {', '.join(ADAPT_METHODS)})")
    if method == "simcse" and settings.batch_size < 2:
        raise InvalidArgumentError("simcse needs --batch-size >= 2: the other texts of a batch are its negatives")
    pool, counts = prepare_pool(texts, max_texts=max_texts, seed=settings.seed)
    location, base_info = resolve_base(base)
    out, ckpt_dir = runs.prepare_out(out_dir)
    try:
        record = {"kind": ADAPT_KIND, "method": method, "base": base_info["name"], "texts": counts["fingerprint"],
                  "settings": runs.resumable_settings(settings)}
        resume_from = runs.resume_point(ckpt_dir, record, run.resume)
        prefix = base_info["prefix"] or ""

        from transformers import set_seed

        set_seed(settings.seed)
        wall, cpu = time.perf_counter(), time.process_time()
        model = _sentence_model(location, base, settings, device)
        extra: dict = {}
        if method == "mlm":
            trainer, extra = _train_mlm(model, location, pool, prefix, settings, ckpt_dir, device, show_progress,
                                        resume_from)
        else:
            trainer = _train_sentence_loss(model, method, pool, prefix, settings, ckpt_dir, device, show_progress,
                                           resume_from)
        seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu

        with quiet_hf():  # no "Writing model shards" bar
            model.save_pretrained(str(out), create_model_card=False)
        encoder_max = int(base_info["max_length"] or settings.max_length)
        (out / "fewlabel_encoder.json").write_text(json.dumps(
            {"prefix": prefix, "max_length": encoder_max, "pooling": "mean",
             "source": f"adapted from {base_info['name']} by fewlabel ({method}, "
                       f"{int(trainer.state.global_step)} steps on {counts['texts_used']} unlabelled texts)"},
            indent=2) + "\n", encoding="utf-8")
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        info = {"kind": ADAPT_KIND, "method": method, "objective": LOSSES[method], "base": base_info["name"],
                "prefix": prefix, "max_length": encoder_max, "trained_max_length": settings.max_length,
                "pooling": "mean",
                "settings": settings.to_dict(), "data": {**counts, **({"source": source} if source else {})},
                "steps": int(trainer.state.global_step),
                "texts_seen": int(trainer.state.global_step) * settings.batch_size,
                "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
                "train_seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1),
                "device": pick_device(device), "resumed_from": resume_from, **extra,
                "trained_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "versions": _versions()}
        out = runs.finish_run(out, ckpt_dir, trainer, info, model_card=model_card(info),
                         keep_checkpoints=run.keep_checkpoints)
        return {"out_dir": str(out), **{k: info[k] for k in ("method", "steps", "texts_seen", "train_seconds",
                                                             "cpu_seconds", "first_loss", "last_loss", "resumed_from")},
                "texts_used": counts["texts_used"]}
    except BaseException:
        runs.discard_stage(out)  # a refused or failed run (Ctrl-C included) leaves no staging folder beside --out
        raise


# ---- the model -----------------------------------------------------------------------------------------------
def _sentence_model(location: str, base: str, settings: TrainSettings, device: str | None):
    """Transformer -> mean pooling: what :class:`~fewlabel.indexing.Encoder` computes, whatever pooling the base
    folder itself declares (a folder from elsewhere may say CLS)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    with quiet_hf():
        try:
            body = Transformer(str(transformer_folder(Path(location))), max_seq_length=settings.max_length)
            pooling = Pooling(body.get_embedding_dimension(), pooling_mode="mean")
            return SentenceTransformer(modules=[body, pooling], device=pick_device(device))
        except Exception as exc:  # OSError, ValueError … from transformers
            raise ModelError(f"cannot load base model '{base}' as an encoder: {first_line(exc)}") from exc


def _train_sentence_loss(model, method: str, pool: list[str], prefix: str, settings: TrainSettings,
                         ckpt_dir: Path, device: str | None, show_progress: bool, resume_from: str | None) -> Trainer:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import (
        DenoisingAutoEncoderLoss,
        MultipleNegativesRankingLoss,
    )
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    if method == "simcse":
        texts = [prefix + t for t in pool]
        dataset = Dataset.from_dict({"anchor": texts, "positive": texts})
        loss: Module = MultipleNegativesRankingLoss(model)
    else:
        noise = Augmenter("delete", copies=1, p=TSDAE_DELETION, seed=settings.seed)
        noisy = [prefix + (_first(noise.variants(t)) or t) for t in pool]
        dataset = Dataset.from_dict({"noisy": noisy, "text": [prefix + t for t in pool]})
        with quiet_hf():  # the decoder's new cross-attention and head weights are meant to be untrained
            try:
                loss = DenoisingAutoEncoderLoss(model, tie_encoder_decoder=True)
            except Exception as exc:
                raise ModelError(f"cannot build a TSDAE decoder from this encoder's own config: "
                                 f"{first_line(exc)}") from exc
    args = SentenceTransformerTrainingArguments(**_args(ckpt_dir, settings, len(dataset), device, show_progress))
    if settings.freeze_embeddings:  # after the loss: TSDAE's tie has made the decoder's matrix the encoder's
        runs.freeze_word_embeddings(model)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    runs.quiet_trainer(trainer, show_progress)
    trainer.train(resume_from_checkpoint=resume_from)
    return trainer


def _train_mlm(model, location: str, pool: list[str], prefix: str, settings: TrainSettings, ckpt_dir: Path,
               device: str | None, show_progress: bool, resume_from: str | None) -> tuple[Trainer, dict]:
    """Masked-LM on the encoder's folder; the trained encoder weights are then copied into ``model``."""
    from datasets import Dataset
    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments

    folder = str(transformer_folder(Path(location)))
    tokenizer = model[0].tokenizer
    with quiet_hf():
        try:
            mlm, loading = AutoModelForMaskedLM.from_pretrained(folder, output_loading_info=True)
        except Exception as exc:
            raise ModelError(f"cannot load '{folder}' as a masked-LM: {first_line(exc)}") from exc
    new_head = sorted(loading.get("missing_keys") or [])
    encoded = tokenizer([prefix + t for t in pool], truncation=True, max_length=settings.max_length)
    dataset = Dataset.from_dict({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})
    if settings.freeze_embeddings:  # the head's output matrix is tied to it, and stays fixed too
        mlm.get_input_embeddings().weight.requires_grad_(False)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=MLM_PROBABILITY, seed=settings.seed)
    args = TrainingArguments(**_args(ckpt_dir, settings, len(dataset), device, show_progress))
    trainer = Trainer(model=mlm.to(pick_device(device)), args=args, train_dataset=dataset, data_collator=collator)
    runs.quiet_trainer(trainer, show_progress)
    trainer.train(resume_from_checkpoint=resume_from)

    encoder = runs.transformers_model(model[0])
    result = encoder.load_state_dict(mlm.base_model.state_dict(), strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("pooler.")]  # the MLM body has no pooler
    if missing or result.unexpected_keys:
        raise ModelError(f"the masked-LM body does not match the encoder (missing {missing[:3]}, unexpected "
                         f"{list(result.unexpected_keys)[:3]})")
    head_weights = sum(p.numel() for n, p in mlm.named_parameters() if not n.startswith(mlm.base_model_prefix + "."))
    return trainer, {"mlm_head": {"new_weights": new_head, "head_parameters": int(head_weights),
                                  "tied_to_word_embeddings": bool(getattr(mlm.config, "tie_word_embeddings", True))}}


def _args(ckpt_dir: Path, settings: TrainSettings, n_rows: int, device: str | None, show_progress: bool) -> dict:
    """The shared trainer arguments (no dev set: the last step is kept), logging the first step's loss too: the
    loss before any update is the card's reference point (for mlm, the untrained head's)."""
    return {**runs.trainer_args(ckpt_dir, settings, n_rows, False, device, show_progress, metric="loss"),
            "logging_first_step": True}


def _first(items: list[str]) -> str | None:
    return items[0] if items else None


def _versions() -> dict:
    import sentence_transformers
    import transformers

    return {"sentence_transformers": sentence_transformers.__version__, "transformers": transformers.__version__}
