"""fewlabel.finetune: training. Cross-encoder heads for STS, NLI and relation extraction, the STS bi-encoder,
and the text classifiers (SetFit, a fine-tuned transformer) the benchmarks compare. Each trainer writes a model
folder that `fewlabel.retrieval` loads (the marker contract is `fewlabel.indexing.model_folder`).

    from fewlabel.finetune import train_sts_cross_encoder

The names below load on first use (nothing heavy is imported with the package)."""

from typing import TYPE_CHECKING

from fewlabel.indexing.lazy import lazy_exports

_EXPORTS = {
    "TrainSettings": "fewlabel.finetune.settings",
    "resolve_base": "fewlabel.finetune.settings",
    "RunOptions": "fewlabel.finetune.settings",
    "train_sts_cross_encoder": "fewlabel.finetune.sts.trainer",
    "train_sts_bi_encoder": "fewlabel.finetune.sts.trainer",
    "train_nli_cross_encoder": "fewlabel.finetune.nli.trainer",
    "train_re_classifier": "fewlabel.finetune.relation.trainer",
    "train_setfit": "fewlabel.finetune.classify.setfit",
    "fine_tune_classifier": "fewlabel.finetune.classify.transformer",
}

if TYPE_CHECKING:  # the real types for checkers and IDEs; at run time the names stay lazy
    from fewlabel.finetune.classify.setfit import train_setfit as train_setfit
    from fewlabel.finetune.classify.transformer import fine_tune_classifier as fine_tune_classifier
    from fewlabel.finetune.nli.trainer import train_nli_cross_encoder as train_nli_cross_encoder
    from fewlabel.finetune.relation.trainer import train_re_classifier as train_re_classifier
    from fewlabel.finetune.settings import TrainSettings as TrainSettings, resolve_base as resolve_base
    from fewlabel.finetune.sts.trainer import (
        train_sts_bi_encoder as train_sts_bi_encoder,
        train_sts_cross_encoder as train_sts_cross_encoder,
    )

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
