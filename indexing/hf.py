"""Hugging Face plumbing every room shares: which device to run on, and loading models quietly.

Written once here because five loaders each silenced transformers their own way; a user who asked for `-q`
must see no load report, no "Loading weights" bar and no hub warnings, whoever loads the model."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fewlabel.indexing.errors import ModelError, first_line

_LOGGERS = ("sentence_transformers", "huggingface_hub")


def pick_device(device: str | None = None) -> str:
    """`cuda` when a GPU is present, else `cpu`, unless the caller names one."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def quiet_hf(*, logs: bool = True, bars: bool = True) -> Iterator[None]:
    """Silence transformers, sentence-transformers and huggingface_hub down to errors (``logs``) and hide
    transformers' own "Loading weights" / "Writing model shards" bars (``bars``) inside the block; both are
    restored after it. A freshly added classifier head is *meant* to be untrained: its load report is noise."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    bars_were_on = hf_logging.is_progress_bar_enabled()
    if logs:
        hf_logging.set_verbosity_error()
        for name in _LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    if bars:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        if bars_were_on:
            hf_logging.enable_progress_bar()


def load_cross_encoder(location: str | Path, *, what: str, device: str | None = None, max_length: int | None = None,
                       local_files_only: bool = True, **kwargs):
    """A sentence-transformers ``CrossEncoder`` loaded quietly; any failure becomes one :class:`ModelError`
    line naming ``what`` (``STS cross-encoder``, ``NLI model``, …) and the folder."""
    from sentence_transformers import CrossEncoder

    with quiet_hf():
        try:
            return CrossEncoder(str(location), device=pick_device(device), local_files_only=local_files_only,
                                max_length=max_length, **kwargs)
        except Exception as exc:  # OSError, ValueError, HTTP errors … from transformers
            raise ModelError(f"cannot load {what} '{location}': {first_line(exc)}") from exc
