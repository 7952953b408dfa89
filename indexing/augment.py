"""Label-preserving text augmentation: the book's EDA experiment (token swap, deletion, insertion), N copies
per labelled row, reproducible by seed.

Why a module of our own rather than nlpaug: nlpaug's model-free augmenter (``RandomWordAug``) offers swap,
delete, crop and substitute-with-a-given-word, but no insertion; its synonym and embedding augmenters need
WordNet or model downloads, which this project cannot make; and its last release is from 2022. The three
operations below are a few lines each with :class:`random.Random`.

- ``swap``: exchange two tokens, ``n`` times;
- ``delete``: drop each token with probability ``p`` (at least one token stays);
- ``insert``: insert a copy of one of the text's own tokens at a random place, ``n`` times (EDA inserts a
  synonym; without a thesaurus the text's own words are the label-safe choice);
- ``eda``: each copy applies one of the three, drawn at random.

``n = max(1, round(p * tokens))``. Tokens are whitespace-separated words (``unit="word"``; for Korean these are
eojeol, a word with its particles) or characters (``unit="char"``: single non-space characters, so Korean is
perturbed syllable by syllable and spaces stay where they are).

Every copy of a text is drawn from a generator seeded by (seed, text, copy number), so a text is augmented the
same way whatever rows come with it: nested benchmark slices see the same copies of a row, and a re-run with
the same seed gives the same data. Copies that equal the original or an earlier copy (a one-word text cannot be
swapped) are dropped, so a row gets *at most* ``copies`` copies."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from fewlabel.indexing.errors import InvalidArgumentError
from fewlabel.indexing.readers import Row

__all__ = ["AUGMENT_METHODS", "AUGMENT_UNITS", "Augmenter", "augment_rows"]

AUGMENT_METHODS = ("eda", "swap", "delete", "insert")
AUGMENT_UNITS = ("word", "char")
COPY_MARK = "~aug"  # an augmented row's id is the original's with this and the copy number appended


@dataclass(frozen=True)
class Augmenter:
    """How rows are perturbed: ``method`` (one of :data:`AUGMENT_METHODS`), ``copies`` per row, the share ``p``
    of tokens touched, the token ``unit`` and the ``seed``."""

    method: str = "eda"
    copies: int = 4
    p: float = 0.1
    unit: str = "word"
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.method not in AUGMENT_METHODS:
            problems.append(f"unknown augmentation '{self.method}' (choose from {', '.join(AUGMENT_METHODS)})")
        if self.copies < 1:
            problems.append(f"copies must be >= 1 (got {self.copies})")
        if not 0 < self.p < 1:
            problems.append(f"the share of tokens changed must be between 0 and 1 (got {self.p})")
        if self.unit not in AUGMENT_UNITS:
            problems.append(f"unknown unit '{self.unit}' (choose from {', '.join(AUGMENT_UNITS)})")
        if problems:
            raise InvalidArgumentError("bad augmentation settings: " + "; ".join(problems))

    def describe(self) -> dict:
        return {"method": self.method, "copies": self.copies, "p": self.p, "unit": self.unit, "seed": self.seed}

    @property
    def name(self) -> str:
        """Short tag for method names and reports, e.g. ``eda``, or ``eda-char`` for characters."""
        return self.method + ("-char" if self.unit == "char" else "")

    # -- texts --
    def variants(self, text: str) -> list[str]:
        """Up to ``copies`` distinct perturbations of ``text`` (never ``text`` itself)."""
        seen = {text}
        out = []
        for k in range(self.copies):
            rng = random.Random(f"{self.seed}\x1f{k}\x1f{text}")  # str seeds hash with SHA-512: stable across runs
            method = rng.choice(("swap", "delete", "insert")) if self.method == "eda" else self.method
            variant = self._perturb(text, method, rng)
            if variant not in seen:
                seen.add(variant)
                out.append(variant)
        return out

    def _perturb(self, text: str, method: str, rng: random.Random) -> str:
        if self.unit == "word":
            return " ".join(_apply(text.split(), method, self.p, rng))
        return _apply_chars(text, method, self.p, rng)

    # -- rows --
    def augment(self, rows: Sequence[Row]) -> list[Row]:
        """``rows`` followed by their copies (same labels and line; id ``<id>~aug<k>``)."""
        out = list(rows)
        for row in rows:
            out += [replace(row, text=variant, id=f"{row.id}{COPY_MARK}{k + 1}")
                    for k, variant in enumerate(self.variants(row.text))]
        return out


def augment_rows(rows: Sequence[Row], method: str = "eda", *, copies: int = 4, p: float = 0.1, unit: str = "word",
                 seed: int = 0) -> list[Row]:
    """``Augmenter(method, copies, p, unit, seed).augment(rows)``."""
    return Augmenter(method, copies, p, unit, seed).augment(rows)


def _apply(tokens: list[str], method: str, p: float, rng: random.Random) -> list[str]:
    tokens = list(tokens)
    if not tokens:
        return tokens
    n = max(1, round(p * len(tokens)))
    if method == "swap":
        if len(tokens) > 1:
            for _ in range(n):
                i, j = rng.sample(range(len(tokens)), 2)
                tokens[i], tokens[j] = tokens[j], tokens[i]
        return tokens
    if method == "delete":
        if len(tokens) == 1:
            return tokens
        kept = [t for t in tokens if rng.random() >= p]
        return kept or [rng.choice(tokens)]
    for _ in range(n):  # insert
        tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(tokens))
    return tokens


def _apply_chars(text: str, method: str, p: float, rng: random.Random) -> str:
    """The same operations on single non-space characters; spaces stay where they are. A swap exchanges a
    character with its next non-space neighbour (a far swap would scramble a word beyond reading)."""
    chars = list(text)
    slots = [i for i, c in enumerate(chars) if not c.isspace()]
    if not slots:
        return text
    n = max(1, round(p * len(slots)))
    if method == "swap":
        if len(slots) > 1:
            for _ in range(n):
                k = rng.randrange(len(slots) - 1)
                i, j = slots[k], slots[k + 1]
                chars[i], chars[j] = chars[j], chars[i]
        return "".join(chars)
    if method == "delete":
        if len(slots) == 1:
            return text
        dropped = {i for i in slots if rng.random() < p}
        if len(dropped) == len(slots):
            dropped.discard(rng.choice(slots))
        return "".join(c for i, c in enumerate(chars) if i not in dropped)
    additions: dict[int, list[str]] = {}  # insert: copies of the text's own characters after random characters
    for _ in range(n):
        additions.setdefault(rng.choice(slots), []).append(chars[rng.choice(slots)])
    return "".join(c + "".join(additions.get(i, ())) for i, c in enumerate(chars))
