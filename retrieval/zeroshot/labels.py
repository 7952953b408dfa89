"""Candidate labels for zero-shot scoring: names with aliases (``joy=joy|happiness``), label files, and the
templates that turn a name into a hypothesis or a description ("This example is about {}." / "이 글은 {}에 관한
내용이다."; a name with Hangul gets the Korean one)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fewlabel.indexing.errors import DataError, FewlabelError, InvalidArgumentError
from fewlabel.indexing.readers import read_text_file
from fewlabel.indexing.text import has_hangul

__all__ = ["TEMPLATES", "LabelSet", "check_template", "hypotheses", "parse_labels", "read_labels_file",
           "render_template"]

TEMPLATES = {"en": "This example is about {}.", "ko": "이 글은 {}에 관한 내용이다."}
_PLACEHOLDER = re.compile(r"\{(label)?\}")


@dataclass(frozen=True)
class LabelSet:
    """Candidate labels in order, each with the names (aliases) its hypotheses are made from."""

    names: tuple[str, ...]
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.names:
            raise InvalidArgumentError("the label list is empty: give at least one candidate label")
        dup = sorted({n for n in self.names if self.names.count(n) > 1})
        if dup:
            raise InvalidArgumentError(f"label(s) listed twice: {', '.join(dup)}")
        blank = [n for n in self.names if not str(n).strip()]
        if blank:
            raise InvalidArgumentError("a label name is empty")
        full = {n: tuple(self.aliases.get(n) or (n,)) for n in self.names}
        for name, names in full.items():
            if any(not a.strip() for a in names):
                raise InvalidArgumentError(f"label '{name}' has an empty alias")
        object.__setattr__(self, "aliases", full)

    def __len__(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict[str, list[str]]:
        return {n: list(self.aliases[n]) for n in self.names}


def _parse_one(item: str) -> tuple[str, tuple[str, ...]]:
    name, sep, rest = item.partition("=")
    name = name.strip()
    if not sep:
        return name, (name,)
    aliases = tuple(a.strip() for a in rest.split("|"))
    if not rest.strip() or any(not a for a in aliases):
        raise InvalidArgumentError(f"label '{name}': aliases after '=' are names separated by '|', e.g. "
                            f"'{name or 'joy'}=joy|happiness' (got '{item.strip()}')")
    return name, aliases


def parse_labels(spec: LabelSet | str | Sequence[str] | Mapping[str, str | Sequence[str]]) -> LabelSet:
    """Candidate labels from ``"a,b=x|y"``, a list of such items, or ``{label: [aliases]}``."""
    if isinstance(spec, LabelSet):
        return spec
    if spec is None:
        raise InvalidArgumentError("the label list is empty: give at least one candidate label")
    if isinstance(spec, Mapping):
        names, aliases = [], {}
        for name, value in spec.items():
            names.append(str(name).strip())
            items = [value] if isinstance(value, str) else list(value or [name])
            aliases[str(name).strip()] = tuple(str(a).strip() for a in items)
        return LabelSet(tuple(names), aliases)
    items = [s for s in spec.split(",")] if isinstance(spec, str) else [str(s) for s in spec]
    items = [s for s in items if s.strip()]
    parsed = [_parse_one(s) for s in items]
    return LabelSet(tuple(n for n, _ in parsed), {n: a for n, a in parsed})


def read_labels_file(path: str | os.PathLike) -> LabelSet:
    """Labels from a file: ``.json`` holds a list of names or ``{label: [aliases]}``; any other file has one
    label a line, optionally ``label=alias|alias`` (blank lines and ``#`` comments are skipped)."""

    content = read_text_file(path)
    if Path(path).suffix.lower() == ".json":
        try:
            data = json.loads(content)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON ({exc.msg})", path=str(path), line=exc.lineno) from exc
        if not isinstance(data, (list, dict)):
            raise DataError("expected a JSON list of labels or an object {label: [aliases]}", path=str(path))
        try:
            return parse_labels(data)
        except FewlabelError as exc:
            raise DataError(str(exc), path=str(path)) from exc
    items = []
    for number, line in enumerate(content.splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            items.append(_parse_one(text))
        except FewlabelError as exc:
            raise DataError(str(exc), path=str(path), line=number) from exc
    try:
        return LabelSet(tuple(n for n, _ in items), {n: a for n, a in items})
    except FewlabelError as exc:
        raise DataError(str(exc), path=str(path)) from exc


def check_template(template: str | None) -> str | None:
    """A template must say where the label goes: ``{}`` or ``{label}``, exactly once."""
    if template is None:
        return None
    if not isinstance(template, str) or len(_PLACEHOLDER.findall(template)) != 1:
        raise InvalidArgumentError(f"template {template!r} must contain the label's place once, as {{}} or {{label}}, "
                            f"e.g. {TEMPLATES['en']!r}")
    return template


def render_template(template: str | None, name: str) -> str:
    """The hypothesis / description for one label name (auto template: Korean when the name has Hangul)."""
    if template is None:
        template = TEMPLATES["ko"] if has_hangul(name) else TEMPLATES["en"]
    check_template(template)
    return _PLACEHOLDER.sub(lambda _: name, template)


def hypotheses(labels: LabelSet, template: str | None) -> tuple[list[str], np.ndarray]:
    """One text per (label, alias) and the label index of each, in label order."""
    texts, groups = [], []
    for j, name in enumerate(labels.names):
        for alias in labels.aliases[name]:
            texts.append(render_template(template, alias))
            groups.append(j)
    return texts, np.asarray(groups, dtype=np.int64)
