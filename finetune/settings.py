"""Training settings shared by fewlabel's heads (STS, NLI and relation extraction): one small
dataclass, checked once, recorded verbatim in each model's card and marker file, and turned into the
sentence-transformers trainer's arguments in one place."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from fewlabel.indexing.encoders.registry import REGISTRY
from fewlabel.indexing.errors import InvalidArgumentError, ModelError


@dataclass(frozen=True)
class TrainSettings:
    """How a head is trained. ``max_steps`` (when set) stops early, for smoke runs; ``warmup_ratio`` is
    the fraction of steps with a rising learning rate. ``freeze_embeddings`` keeps the word-embedding matrix
    fixed: e5-small's is 250k x 384 (96M of its 118M weights), and on a CPU its gradient and Adam update
    cost more than the rest of the step, while fine-tuning moves it little."""

    epochs: float = 2
    lr: float = 2e-5
    batch_size: int = 16
    max_length: int = 128
    warmup_ratio: float = 0.1
    seed: int = 42
    max_steps: int | None = None
    freeze_embeddings: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not self.epochs > 0:
            problems.append(f"epochs must be > 0 (got {self.epochs})")
        if not 0 < self.lr < 1:
            problems.append(f"lr must be between 0 and 1 (got {self.lr})")
        if self.batch_size < 1:
            problems.append(f"batch size must be >= 1 (got {self.batch_size})")
        if not 8 <= self.max_length <= 8192:
            problems.append(f"max length must be 8-8192 tokens (got {self.max_length})")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"warmup ratio must be in [0, 1) (got {self.warmup_ratio})")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"max steps must be >= 1 (got {self.max_steps})")
        if problems:
            raise InvalidArgumentError("bad training settings: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)

    def trainer_kwargs(self) -> dict:
        """The matching `transformers.TrainingArguments` fields (transformers 5 reads a `warmup_steps` below 1
        as a ratio of all steps)."""
        return {"num_train_epochs": self.epochs, "learning_rate": self.lr,
                "per_device_train_batch_size": self.batch_size, "per_device_eval_batch_size": self.batch_size,
                "warmup_steps": self.warmup_ratio, "seed": self.seed, "data_seed": self.seed,
                "max_steps": self.max_steps if self.max_steps else -1}


@dataclass(frozen=True)
class RunOptions:
    """How a training run is carried out, as opposed to how the model is trained (:class:`TrainSettings`): none
    of these change the weights, so none is recorded or compared when a run resumes. ``resume`` continues from
    ``OUT/checkpoints`` when they were made by the same run; ``keep_checkpoints`` leaves them there afterwards."""

    resume: bool = True
    keep_checkpoints: bool = False
    device: str | None = None
    show_progress: bool = True


def resolve_base(base: str) -> tuple[str, dict]:
    """A base model folder and its encoder settings (prefix, max_length) from a registry name or a
    local folder. Training needs weights on disk, so hub ids are refused."""
    if base in REGISTRY:
        spec = REGISTRY[base]
        return str(spec.locate()), {"name": base, "prefix": spec.prefix, "max_length": spec.max_length}
    path = Path(base).expanduser()
    if not path.is_dir():
        raise ModelError(f"base model '{base}' is neither a registry name ({', '.join(sorted(REGISTRY))}) "
                         "nor a local model folder")
    from fewlabel.indexing.encoders.encoder import folder_settings, transformer_folder

    if not (transformer_folder(path) / "config.json").is_file():
        raise ModelError(f"base model folder '{base}' has no config.json")
    settings = folder_settings(path)
    return str(path.resolve()), {"name": str(path.resolve()), "prefix": settings.get("prefix", ""),
                                 "max_length": settings.get("max_length")}
