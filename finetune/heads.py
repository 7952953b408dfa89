"""The skeleton every supervised head shares (the STS cross- and bi-encoder, the NLI cross-encoder, the relation
classifier): one :class:`HeadTrainer` runs the job, and each head fills in only what is its own.

The job, in order:

1. check the labelled items (``train`` is required; ``dev`` and ``test`` are optional): no items, or an item
   without a usable label, is a :class:`~fewlabel.indexing.errors.DataError` naming its line and field;
2. resolve the base model, claim the output folder and find the checkpoint to resume from: the run record
   (kind, base, the head's own options, the train and dev fingerprints, the settings that change how it trains)
   must equal the one stored beside the checkpoints (:func:`fewlabel.finetune.runs.resume_point`);
3. seed, load the model, freeze its word embeddings if asked, train with the head's sentence-transformers
   trainer (the best dev epoch is kept), save it;
4. score dev and test, write the marker record, ``training_log.jsonl``, ``scores.json`` (heads that take test
   data) and the model card (:mod:`fewlabel.finetune.model_card`), and the marker file last.

What a head supplies: which items are bad (:meth:`HeadTrainer.problem`), what of an item is fingerprinted
(:meth:`HeadTrainer.fingerprint_fields`), the model, the trainer, the scores, its fields of the record and
its part of the card. Kept apart from any one head, so a new head is one subclass."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from fewlabel.finetune.model_card import ModelCard, fine_tuned_from, number, render, run_rows, source_lines
from fewlabel.finetune.runs import (
    discard_stage,
    finish_run,
    freeze_word_embeddings,
    prepare_out,
    quiet_trainer,
    resumable_settings,
    resume_point,
    run_outcome,
    trainer_args,
)
from fewlabel.finetune.settings import RunOptions, TrainSettings, resolve_base
from fewlabel.indexing.errors import DataError, ModelError, first_line
from fewlabel.indexing.hf import quiet_hf

__all__ = ["HeadTrainer", "Job"]

Item = TypeVar("Item")


@dataclass
class Job(Generic[Item]):
    """One training run's checked data and folders."""

    train: list[Item]
    dev: list[Item]
    test: list[Item]
    base: str
    location: str
    base_info: dict
    out: Path
    ckpt_dir: Path
    resume_from: str | None
    sources: dict[str, str] | None


class HeadTrainer(Generic[Item]):
    """Trains one head: :meth:`train` is the whole job; subclasses fill in the hooks below it."""

    kind: ClassVar[str]  #: the marker's ``kind``
    title: ClassVar[str]  #: the model card's title, after "fewlabel "
    noun: ClassVar[str] = "pairs"  #: what an item is called in errors, the data record and the card
    roles: ClassVar[tuple[str, ...]] = ("train", "dev", "test")  #: the data a head takes
    timed: ClassVar[tuple[str, ...]] = ()  #: roles whose scores record the seconds scoring took
    loads_as: ClassVar[str] = "a cross-encoder"  #: in "cannot load base model … as …"
    dev_name: ClassVar[str]  #: the dev evaluator's name: its metrics are logged as ``eval_<dev_name>_<metric>``
    primary: ClassVar[str]  #: the dev metric that picks the best checkpoint
    epoch_metrics: ClassVar[dict[str, str]]  #: the marker's ``dev_per_epoch`` fields: name -> evaluator metric
    epoch_columns: ClassVar[dict[str, str]]  #: the card's per-epoch table: column -> ``dev_per_epoch`` field
    best_text: ClassVar[str]  #: "The checkpoint with the best dev <best_text> was kept."
    scores_title: ClassVar[str] = "Scores"
    source_suffix: ClassVar[str] = " file"  #: "- train file: `path`"
    use_shell: ClassVar[list[str]]
    use_python: ClassVar[list[str]]

    def __init__(self, settings: TrainSettings, run: RunOptions) -> None:
        self.settings = settings
        self.run = run

    # ---- the job ----------------------------------------------------------------------------------------
    def train(self, train: Sequence[Item], dev: Sequence[Item] | None, base: str, out_dir: str | Path, *,
              test: Sequence[Item] | None = None, sources: dict[str, str] | None = None) -> dict:
        """Train on ``base`` (registry name or folder), save to ``out_dir``. Returns a summary: output folder,
        dev (and test) scores, steps, seconds, where it resumed from."""
        train_items = self.checked(train, "train")
        dev_items = self.checked(dev, "dev") if dev else []
        test_items = self.checked(test, "test") if test else []
        location, base_info = resolve_base(base)
        out, ckpt_dir = prepare_out(out_dir)
        try:
            resume_from = resume_point(ckpt_dir, self.run_record(base_info, train_items, dev_items), self.run.resume)
            job = Job(train_items, dev_items, test_items, base, location, base_info, out, ckpt_dir, resume_from,
                      sources)
            with quiet_hf(logs=False, bars=not self.run.show_progress):
                return self._fit(job)
        except BaseException:
            discard_stage(out)  # a refused or failed run leaves no staging folder beside --out
            raise

    def _fit(self, job: Job[Item]) -> dict:
        from transformers import set_seed

        started = time.perf_counter()
        set_seed(self.settings.seed)  # the new head's initial weights
        model = self.load(job)
        if self.settings.freeze_embeddings:
            freeze_word_embeddings(model)
        trainer = self.trainer(model, job)
        quiet_trainer(trainer, self.run.show_progress)
        trainer.train(resume_from_checkpoint=job.resume_from)
        seconds = time.perf_counter() - started

        self.save(model, job)
        scored = self.roles[1:]
        scores = {role: self.scored(model, role, getattr(job, role)) for role in scored}
        info = self.info(job, trainer, scores, seconds)
        out = finish_run(job.out, job.ckpt_dir, trainer, info, model_card=self.model_card(info),
                   keep_checkpoints=self.run.keep_checkpoints,
                   scores={role: info[role] for role in scored} if "test" in self.roles else None)
        return {"out_dir": str(out), **{k: info[k] for k in (*scored, "steps", "train_seconds", "resumed_from")}}

    def checked(self, items: Sequence[Item] | None, role: str) -> list[Item]:
        items = list(items or [])
        if not items:
            raise DataError(f"no {role} {self.noun}")
        for item in items:
            problem = self.problem(item, role)
            if problem is not None:
                message, field = problem
                raise DataError(message, line=getattr(item, "line", None), field=field)
        return items

    @classmethod
    def fingerprint(cls, items: Sequence[Item]) -> str:
        """What a run was trained on, in 16 hex digits: resume and reuse only with the same items."""
        h = hashlib.sha256()
        for item in items:
            h.update(json.dumps(cls.fingerprint_fields(item), ensure_ascii=False).encode())
        return h.hexdigest()[:16]

    def run_record(self, base_info: dict, train: list[Item], dev: list[Item]) -> dict:
        """What must match for checkpoints to be resumed (see `fewlabel.finetune.runs.resume_point`)."""
        return {"kind": self.kind, "base": base_info["name"], **self.resume_options(), "train": self.fingerprint(train),
                "dev": self.fingerprint(dev), "settings": resumable_settings(self.settings)}

    def load(self, job: Job[Item]) -> Any:
        with quiet_hf():
            try:
                return self.new_model(job)
            except ModelError:
                raise
            except Exception as exc:  # OSError, ValueError … from transformers
                raise ModelError(f"cannot load base model '{job.base}' as {self.loads_as}: {first_line(exc)}") from exc

    def args(self, job: Job[Item], n_rows: int) -> dict:
        """The trainer's arguments: the best dev epoch by ``primary`` is kept."""
        return trainer_args(job.ckpt_dir, self.settings, n_rows, bool(job.dev), self.run.device,
                            self.run.show_progress, metric=f"eval_{self.dev_name}_{self.primary}")

    def save(self, model: Any, job: Job[Item]) -> None:
        model.save_pretrained(str(job.out), create_model_card=False)

    def scored(self, model: Any, role: str, items: list[Item]) -> dict | None:
        if not items:
            return None
        started = time.perf_counter()
        scores = self.score(model, items)
        if role in self.timed:
            scores["seconds"] = round(time.perf_counter() - started, 1)
        return scores

    def info(self, job: Job[Item], trainer: Any, scores: dict[str, dict | None], seconds: float) -> dict:
        """The marker record: the head's fields, base, settings, how it learns, the data, then the outcome."""
        key = f"eval_{self.dev_name}_"
        per_epoch = [{"epoch": e.get("epoch"), "step": e.get("step"),
                      **{name: e.get(key + metric) for name, metric in self.epoch_metrics.items()}}
                     for e in trainer.state.log_history if key + self.primary in e]
        counts = self.class_counts(job.train)
        data = {**{f"{role}_{self.noun}": len(getattr(job, role)) for role in self.roles},
                **({"train_classes": counts} if counts is not None else {}),
                "train_fingerprint": self.fingerprint(job.train), **({"sources": job.sources} if job.sources else {})}
        return {"kind": self.kind, **self.head_record(job), "base": job.base_info["name"],
                "settings": self.settings.to_dict(), **self.method_record(job), "data": data,
                **run_outcome(trainer, scores, per_epoch, seconds, job.resume_from)}

    # ---- the card -----------------------------------------------------------------------------------------
    def model_card(self, info: dict) -> str:
        data = info["data"]
        lines = [f"- {role}: {data[f'{role}_{self.noun}']:,} {self.noun}{self.role_note(info, role)}"
                 for role in self.roles]
        card = ModelCard(title=f"fewlabel {self.title}", intro=[fine_tuned_from(info), self.about(info)],
                         data=lines + source_lines(data, self.source_suffix) + self.data_notes(info),
                         settings=[*info["settings"].items(), *self.setting_rows(info), *run_rows(info)],
                         scores=self.score_lines(info), scores_title=self.scores_title,
                         use_shell=self.use_shell, use_python=self.use_python)
        return render(card)

    def score_lines(self, info: dict) -> list[str]:
        lines: list[str] = []
        if info["dev"]:
            lines += self.score_block("Dev (final model)", info["dev"], info)
            if info["dev_per_epoch"]:
                columns = self.epoch_columns
                lines += ["| epoch | step | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
                lines += [f"| {e['epoch']:.2f} | {e['step']} | " + " | ".join(self.fmt(e[k]) for k in columns.values())
                          + " |" for e in info["dev_per_epoch"]]
                lines += ["", f"The checkpoint with the best dev {self.best_text} was kept.", ""]
        else:
            lines += [f"No dev {self.noun} were given: the last checkpoint was kept.", ""]
        if info.get("test"):
            lines += self.score_block("Test (held out, scored once)", info["test"], info)
        return lines

    # ---- hooks --------------------------------------------------------------------------------------------
    def problem(self, item: Item, role: str) -> tuple[str, str] | None:
        """(message, field) when ``item`` cannot be used for ``role``."""
        raise NotImplementedError

    @staticmethod
    def fingerprint_fields(item: Item) -> list:
        raise NotImplementedError

    def resume_options(self) -> dict:
        """The head's own options that must match to resume."""
        return {}

    def new_model(self, job: Job[Item]) -> Any:
        raise NotImplementedError

    def trainer(self, model: Any, job: Job[Item]) -> Any:
        """A sentence-transformers trainer for ``model`` on ``job.train`` (dev: the evaluator)."""
        raise NotImplementedError

    def score(self, model: Any, items: list[Item]) -> dict:
        raise NotImplementedError

    def class_counts(self, items: list[Item]) -> dict | None:
        return None

    def head_record(self, job: Job[Item]) -> dict:
        """The marker fields before ``base``: what a reader of the folder needs to use it."""
        return {}

    def method_record(self, job: Job[Item]) -> dict:
        """The marker fields after ``settings``: how it was trained."""
        return {}

    def about(self, info: dict) -> str:
        raise NotImplementedError

    def role_note(self, info: dict, role: str) -> str:
        return ""

    def data_notes(self, info: dict) -> list[str]:
        return []

    def setting_rows(self, info: dict) -> list[tuple[str, object]]:
        return [("objective", info["objective"])]

    def score_block(self, title: str, scores: dict, info: dict) -> list[str]:
        raise NotImplementedError

    @staticmethod
    def fmt(value: float | None) -> str:
        return number(value)
