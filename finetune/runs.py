"""What every fine-tuning run shares (STS, NLI, relation, and heads to come): the output folder and its marker
file (the contract itself is `fewlabel.indexing.model_folder`), TrainingArguments built from `TrainSettings`,
and quieting the trainer where it is noise.

Kept apart from any one head so a new head imports these instead of copying them."""

from __future__ import annotations

import atexit
import dataclasses
import json
import math
import os
import shutil
from pathlib import Path

from fewlabel.finetune.settings import TrainSettings
from fewlabel.indexing.errors import InvalidArgumentError, ModelError
from fewlabel.indexing.files import replace_directory, resolve_target, staging_directory
from fewlabel.indexing.hf import pick_device
from fewlabel.indexing.model_folder import RUN_FILE, claim_model_folder, read_marker, write_marker

_TARGETS: dict[Path, Path] = {}  # staging folder -> the --out it will replace (see prepare_out)


def prepare_out(out_dir: str | Path) -> tuple[Path, Path]:
    """(staging folder, checkpoint folder) for a run into ``out_dir``. The model is trained and saved into a new
    staging folder beside ``out_dir`` and swapped in whole by :func:`finish_run`, as an index is: an interrupted
    run leaves a finished ``out_dir`` as it was (marker, weights and card), never half-trained weights. Only the
    checkpoints, which a re-run resumes from, live in ``OUT/checkpoints`` meanwhile. A link at ``out_dir`` is
    followed (its real folder is replaced)."""
    out = resolve_target(out_dir)
    claim_model_folder(out)  # a user's own folder is never written into
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    stage = staging_directory(out)
    _TARGETS[stage] = out
    atexit.register(shutil.rmtree, stage, ignore_errors=True)  # an error before finish_run: no stray stage
    return stage, out / "checkpoints"


def discard_stage(stage: Path) -> None:
    """Remove the staging folder of a run that failed or was refused (another run's checkpoints, Ctrl-C) at once,
    not at interpreter exit: a library caller's process may live on, and its folder beside --out with it."""
    if _TARGETS.pop(Path(stage), None) is not None:
        shutil.rmtree(stage, ignore_errors=True)


def final_folder(stage: Path) -> Path:
    """The ``--out`` a staging folder from :func:`prepare_out` replaces (the folder itself for any other)."""
    return _TARGETS.get(Path(stage), Path(stage))


def trainer_args(ckpt_dir: Path, settings: TrainSettings, n_rows: int, has_dev: bool, device: str | None,
                  show_progress: bool, *, metric: str) -> dict:
    steps_per_epoch = max(1, math.ceil(n_rows / settings.batch_size))
    kwargs = {**schedule_kwargs(settings), "output_dir": str(ckpt_dir), "save_strategy": "epoch",
              "save_total_limit": 1, "eval_strategy": "epoch" if has_dev else "no",
              "load_best_model_at_end": has_dev, "logging_strategy": "steps",
              "logging_steps": max(1, min(50, steps_per_epoch // 4)), "report_to": "none",
              "disable_tqdm": not show_progress, "dataloader_num_workers": 0,
              "use_cpu": pick_device(device) == "cpu"}
    if has_dev:
        kwargs.update(metric_for_best_model=metric, greater_is_better=True)
    # transformers trains max_steps whatever num_train_epochs says, so a cap above the epochs' steps would extend
    # training (`--epochs 1 --max-steps 4` on 1 step an epoch trained 4): --max-steps caps, never extends
    if kwargs.get("max_steps", -1) > 0 and kwargs["max_steps"] >= math.ceil(settings.epochs * steps_per_epoch):
        kwargs["max_steps"] = -1
    return kwargs


def schedule_kwargs(settings: TrainSettings) -> dict:
    """Settings as TrainingArguments fields; transformers 5 reads `warmup_steps` < 1 as a ratio, older
    versions have `warmup_ratio`."""
    from transformers import TrainingArguments

    kwargs = settings.trainer_kwargs()
    if "warmup_ratio" in {f.name for f in dataclasses.fields(TrainingArguments)} and settings.warmup_ratio:
        kwargs.pop("warmup_steps", None)
        kwargs["warmup_ratio"] = settings.warmup_ratio
    return kwargs


#: the logged values shown on the training bar (the rest, runtimes and throughputs, stay in the log history)
_BAR_SKIPS = ("runtime", "per_second", "total_flos", "epoch", "grad_norm")


def quiet_trainer(trainer, show_progress: bool) -> None:
    """How a transformers (or sentence-transformers, or setfit) trainer reports: without progress bars it prints
    every log as a raw ``{'loss': …}`` dict, so quiet means that printer is removed; with them, its bar also
    writes each log as a raw dict under the bar, so the bar is replaced by one that shows the latest loss and
    metrics after it instead. The log history is kept either way (training_log.jsonl)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    if not show_progress:  # setfit's inner trainer picks its bar before it reads show_progress_bar: drop both
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        return

    class LossBar(ProgressCallback):
        """transformers' training bar, with the logs as its postfix (``loss=0.4127, eval_f1=0.71``)."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or self.training_bar is None or not logs:
                return
            shown = {key: f"{value:.4g}" if isinstance(value, float) else value for key, value in logs.items()
                     if isinstance(value, (int, float)) and not any(skip in key for skip in _BAR_SKIPS)}
            if shown:
                self.training_bar.set_postfix(shown)

    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(LossBar())


def resume_point(ckpt_dir: Path, run: dict, resume: bool) -> str | None:
    """The latest checkpoint in `ckpt_dir` when it was made by the same `run` (kind, base, data fingerprints,
    settings); else None after clearing the folder for a fresh start. Resuming someone else's checkpoints
    would silently mix two trainings, so a different run is refused instead."""
    from transformers.trainer_utils import get_last_checkpoint

    previous = ckpt_dir / RUN_FILE
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    if resume and last:
        recorded = json.loads(previous.read_text()) if previous.is_file() else None
        if recorded != run:
            raise InvalidArgumentError(
                f"{ckpt_dir} holds checkpoints of a different run (other data, base or settings); "
                                "remove that folder or choose another output folder")
        return last
    if ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    ckpt_dir.mkdir(parents=True)
    previous.write_text(json.dumps(run, indent=2) + "\n")
    return None


def transformers_model(module):
    """The transformers model inside a sentence-transformers ``Transformer`` module (``model`` in v6,
    ``auto_model`` before), or None."""
    return getattr(module, "model", None) or getattr(module, "auto_model", None)


def freeze_word_embeddings(model) -> None:
    """Stop training the word-embedding matrix of a (Cross-)Encoder's transformer (the trainers' optimisers
    take only parameters that require gradients)."""
    transformers_model(model[0]).get_input_embeddings().weight.requires_grad_(False)


def resumable_settings(settings: TrainSettings) -> dict:
    """Settings that must match to resume: where training stops (epochs, max_steps) may change between runs,
    how it trains may not."""
    return {k: v for k, v in settings.to_dict().items() if k not in ("epochs", "max_steps")}


def finish_run(out: Path, ckpt_dir: Path, trainer, info: dict, *, model_card: str, keep_checkpoints: bool,
               scores: dict | None = None) -> Path:
    """Log, scores, card, then the marker file (last: its presence means the folder is complete); then the
    staging folder ``out`` replaces the run's ``--out`` in one step. Returns the finished folder."""
    with open(out / "training_log.jsonl", "w", encoding="utf-8") as fh:
        for entry in trainer.state.log_history:
            fh.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
    if scores is not None:
        (out / "scores.json").write_text(json.dumps(scores, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(model_card, encoding="utf-8")
    if keep_checkpoints and ckpt_dir.is_dir():
        shutil.move(str(ckpt_dir), str(out / "checkpoints"))
    follow_umask(out)
    write_marker(out, info)
    target = _TARGETS.pop(Path(out), None)
    if target is None:
        if not keep_checkpoints:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        return out
    replace_directory(out, target)  # the old folder, and with it the run's checkpoints, goes
    return target


def follow_umask(folder: Path) -> None:
    """Give the files a trainer saved the modes of any file the user makes (safetensors writes model.safetensors
    0600 through mkstemp; every other output follows the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o666 & ~mask)
        elif path.is_dir() and not path.is_symlink():
            os.chmod(path, 0o777 & ~mask)


def finished_run(out: Path, wanted: dict) -> dict | None:
    """The marker record of a finished model folder whose record agrees with ``wanted`` (nested dicts are
    compared key by key, so ``wanted`` names only what matters), else None. Benchmarks score such a folder
    again instead of training it again."""
    try:
        info = read_marker(out)
    except ModelError:
        return None  # a damaged record: train again rather than trust it
    return info if info is not None and _agrees(info, wanted) else None


def _agrees(record: object, wanted: object) -> bool:
    if isinstance(wanted, dict):
        return isinstance(record, dict) and all(_agrees(record.get(k), v) for k, v in wanted.items())
    return record == wanted


def run_outcome(trainer, scores: dict[str, dict | None], per_epoch: list[dict], seconds: float,
                resume_from: str | None) -> dict:
    """The part of a head's marker file every trainer records the same way: the scores of each role (``dev``,
    and ``test`` where the head takes test data), steps, time, versions."""
    from datetime import datetime, timezone

    import sentence_transformers
    import transformers

    return {**scores, "dev_per_epoch": per_epoch,
            "best_checkpoint_metric": trainer.state.best_metric, "steps": int(trainer.state.global_step),
            "train_seconds": round(seconds, 1), "resumed_from": resume_from,
            "trained_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "versions": {"sentence_transformers": sentence_transformers.__version__,
                         "transformers": transformers.__version__}}


def deadline_callback(seconds: float, since: float | None = None):
    """A transformers ``TrainerCallback`` that ends training once ``seconds`` have passed since ``since`` (a
    ``time.monotonic()`` reading; default: when training begins): how a time budget (``index build --budget``)
    is kept whatever the speed of the machine, instead of guessing a step count. The step under way finishes
    (at least one step runs); what was trained so far is kept. setfit's Trainer takes the same callbacks."""
    import time

    from transformers import TrainerCallback

    class Deadline(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.ends = (time.monotonic() if since is None else since) + float(seconds)
            self.stopped_at = None

        def on_step_end(self, args, state, control, **kwargs):
            if time.monotonic() >= self.ends:
                control.should_training_stop = True
                self.stopped_at = state.global_step
            return control

    return Deadline()
