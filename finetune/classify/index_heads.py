"""The trainers of an index's trained candidates (``--method setfit|finetune``, or ``auto`` with ``--budget``):
SetFit and a fine-tuned classification head on the index's own encoder, each stopping when its time is up.

`fewlabel.retrieval.methods` scores and stores them but may not import `finetune` (the arrow rule between
packages), so these are handed to it:

    from fewlabel.finetune.classify.index_heads import index_trainers
    from fewlabel.retrieval import build_index
    index = build_index(rows, encoder, valid_rows, method="auto", budget_minutes=10,
                        trainers=index_trainers("e5-small"))

Neither trainer sees the validation rows: they choose between candidates, so a checkpoint chosen on them would
score itself. Fine-tuning keeps its last step; SetFit runs the paper's recipe (20 pairs per text, one epoch)
with the word-embedding matrix frozen: e5-small's is 96M of its 118M weights, and freezing it made an 8-row
fit 5x faster on a 2-core CPU (114 s -> 22 s; ``benchmarks/results/setfit_times.md``), which is what lets auto
cross-validate SetFit by default at small N."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

__all__ = ["index_trainers"]


def index_trainers(base: str, *, device: str | None = None, seed: int = 0, batch_size: int = 16,
                   max_epochs: float = 10, show_progress: bool = False) -> dict[str, Callable]:
    """{"setfit": trainer, "finetune": trainer} on the encoder ``base`` (a registry name or model folder).
    A trainer is ``trainer(texts, label_rows, labels, *, multi_label, seconds)`` and returns a model with
    ``predict_proba``; ``seconds`` bounds its training (fine-tuning also stops after ``max_epochs``)."""

    def setfit(texts: Sequence[str], label_rows: Sequence[Sequence[str]], labels: Sequence[str], *,
               multi_label: bool, seconds: float):
        from fewlabel.finetune.classify.setfit import train_setfit

        return train_setfit(texts, label_rows, labels, base, multi_label=multi_label, batch_size=batch_size,
                            seed=seed, device=device, show_progress=show_progress, time_limit_s=seconds,
                            freeze_embeddings=True)

    def finetune(texts: Sequence[str], label_rows: Sequence[Sequence[str]], labels: Sequence[str], *,
                 multi_label: bool, seconds: float):
        from fewlabel.finetune.classify.transformer import CLASSIFIER_SETTINGS, fine_tune_classifier
        from fewlabel.finetune.settings import RunOptions

        settings = replace(CLASSIFIER_SETTINGS, epochs=max_epochs, batch_size=batch_size, seed=seed)
        return fine_tune_classifier(texts, label_rows, labels, base, settings, multi_label=multi_label,
                                    run=RunOptions(device=device, show_progress=show_progress), time_limit_s=seconds)

    return {"setfit": setfit, "finetune": finetune}
