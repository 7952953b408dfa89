"""The model-folder contract between `finetune` (which writes trained heads) and `retrieval` (which loads them):
the marker file `fewlabel_model.json`, the kinds it names, and reading and writing it.

Defined once, here, because finetune and retrieval may not import each other: before, four modules each
spelled the file name and its kinds themselves. The marker is written last and atomically, so its presence
means the folder is complete."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fewlabel.indexing.errors import ModelError
from fewlabel.indexing.files import atomic_file, refuse_foreign

MARKER_FILE = "fewlabel_model.json"
RUN_FILE = "fewlabel_run.json"  # in OUT/checkpoints: what an unfinished run's checkpoints were trained on

STS_CROSS_KIND = "sts-cross-encoder"
STS_BI_KIND = "sts-bi-encoder"
NLI_KIND = "nli-cross-encoder"
RE_KIND = "re-cross-encoder"
ADAPT_KIND = "adapted-encoder"  # an encoder adapted to unlabelled texts (`fewlabel adapt`): loads as any encoder


def marker_path(folder: str | os.PathLike) -> Path:
    return Path(folder).expanduser() / MARKER_FILE


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The marker record of ``folder``; None when the folder has none. A marker that cannot be read or is not a
    JSON object is a :class:`ModelError` naming the file."""
    path = marker_path(folder)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def write_marker(folder: str | os.PathLike, info: dict) -> Path:
    """Write the marker atomically: the last step of every training run."""
    path = marker_path(folder)
    with atomic_file(path) as fh:
        fh.write(json.dumps(info, ensure_ascii=False, indent=2) + "\n")
    return path


def refuse_unfinished(folder: str | os.PathLike, name: str) -> None:
    """Refuse to load a fewlabel training folder that is not finished: a run started there (its checkpoints'
    record) and never wrote the marker, or a marker that cannot be read. Such a folder may hold half-trained
    weights (a run interrupted by an older fewlabel, which trained in place); loading them would silently give
    other vectors. Plain model folders (no checkpoints record) are not concerned."""
    folder = Path(folder).expanduser()
    started = (folder / "checkpoints" / RUN_FILE).is_file()
    if marker_path(folder).exists():
        read_marker(folder)  # unreadable: ModelError naming the file
    elif started:
        raise ModelError(f"model folder '{name}' is an unfinished fewlabel training run (checkpoints but no "
                         f"{MARKER_FILE}): run the same training command again to finish it, or choose another "
                         "model")


def is_model_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a fewlabel model folder, finished (its marker) or not (its checkpoints' record):
    the only kind of non-empty folder a trainer may write into."""
    folder = Path(folder).expanduser()
    return marker_path(folder).is_file() or (folder / "checkpoints" / RUN_FILE).is_file()


def claim_model_folder(folder: str | os.PathLike, option: str = "--out") -> None:
    """Refuse to train into a folder that holds anything but a fewlabel model (see `refuse_foreign`)."""
    refuse_foreign(folder, folder=True, what="a fewlabel model folder", ours=is_model_folder, option=option)
