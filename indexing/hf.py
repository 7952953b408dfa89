"""Hugging Face plumbing every package shares: which device to run on, and loading models quietly.

Written once here because five loaders each silenced transformers their own way; a user who asked for `-q`
must see no load report, no "Loading weights" bar and no hub warnings, whoever loads the model."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fewlabel.indexing.errors import ModelError, SetupError, first_line

_LOGGERS = ("sentence_transformers", "huggingface_hub", "setfit")


_DEVICE = re.compile(r"^(cpu|mps|(cuda|xpu)(:\d+)?)$")


def check_device_name(device: str) -> str:
    """A device name torch understands (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ``xpu``), else ValueError."""
    name = device.strip().lower()
    if not _DEVICE.match(name):
        raise ValueError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps")
    return name


def pick_device(device: str | None = None) -> str:
    """`cuda` when a GPU is present, else `cpu`, unless the caller names one; a named device that is not there
    is one clear error before any weights load."""
    import torch

    if not device:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        name = check_device_name(device)
    except ValueError as exc:
        raise SetupError(str(exc)) from None
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SetupError(f"device {device!r} was asked for, but torch sees no CUDA GPU here; use --device cpu")
    if name.startswith("cuda:") and int(name.split(":")[1]) >= torch.cuda.device_count():
        raise SetupError(f"device {device!r}: only {torch.cuda.device_count()} CUDA GPU(s) here")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SetupError("device 'mps' was asked for, but it is not available here; use --device cpu")
    return name


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
