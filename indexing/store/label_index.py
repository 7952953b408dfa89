"""`LabelIndex`: labelled texts as vectors in a FAISS index, saved as a self-describing folder.

A saved index is a folder holding `index.faiss` (the vectors), `rows.jsonl` (id, labels and text of
every vector, in index order) and `meta.json` (the encoder and its settings, label names, the tuned
k and m with the scores that chose them, a fingerprint of the data, format and fewlabel versions).
Saving goes through a temporary folder and one rename, so an interrupted save leaves the old index
whole. Loading checks every part against the others and against the encoder it will be used with.

Voting on neighbours lives in `retrieval`; this module only stores and searches."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fewlabel.indexing.encoders.cache import EmbeddingCache, SupportsEncode, encode_with_cache
from fewlabel.indexing.errors import DataError, IndexMismatchError
from fewlabel.indexing.files import atomic_directory
from fewlabel.indexing.readers import Row, label_matrix
from fewlabel.indexing.store.faiss_index import apply_search_params, build_faiss_index

FORMAT_VERSION = 1
INDEX_FILE, ROWS_FILE, META_FILE = "index.faiss", "rows.jsonl", "meta.json"
ENCODER_KEYS = ("model", "prefix", "pooling", "normalize", "dim", "max_length")


def fewlabel_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fewlabel")
    except PackageNotFoundError:
        return "unknown"


def data_fingerprint(rows: Sequence[Row]) -> str:
    """Hash of ids, labels and texts in order: two indexes built from the same data agree."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps([row.id, list(row.labels), row.text], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:20]


@dataclass
class LabelIndex:
    """Vectors of labelled rows plus everything needed to search them again correctly."""

    encoder: dict
    factory: str
    rows: list[Row]
    label_names: list[str]
    multi_label: bool
    faiss_index: object
    tuning: dict | None = None
    extra: dict = field(default_factory=dict)
    search_params: str | None = None

    # ---- building -------------------------------------------------------------------------------
    @classmethod
    def build(cls, rows: Sequence[Row], encoder: SupportsEncode, *, factory: str = "Flat",
              multi_label: bool | None = None, cache: EmbeddingCache | None = None,
              batch_size: int = 32, show_progress: bool = False, search_params: str | None = None) -> LabelIndex:
        """Encode `rows` and index them. `multi_label=None` decides from the data: multi-label
        when any row carries two or more labels. `search_params` (e.g. ``efSearch=128``): see
        :func:`apply_search_params`."""
        rows = list(rows)
        if not rows:
            raise DataError("no labelled rows to index")
        unlabelled = next((r for r in rows if not r.labels), None)
        if unlabelled is not None:
            raise DataError("row has no label", line=unlabelled.line, field="label")
        vectors = encode_with_cache(encoder, [r.text for r in rows], cache, batch_size=batch_size,
                                    show_progress_bar=show_progress)
        index = build_faiss_index(vectors, factory, search_params)
        names = sorted({label for r in rows for label in r.labels})
        if multi_label is None:
            multi_label = any(len(r.labels) > 1 for r in rows)
        meta = encoder.describe(normalize=True)
        return cls(encoder=meta, factory=factory, rows=rows, label_names=names, multi_label=multi_label,
                   faiss_index=index, search_params=search_params or None)

    def add(self, rows: Sequence[Row], encoder: SupportsEncode, *, cache: EmbeddingCache | None = None,
            batch_size: int = 32, show_progress: bool = False) -> int:
        """Encode and append more rows (new labels are allowed and join `label_names`). Returns the
        number added. Rows whose id is already in the index are refused, naming the line."""
        self.check_encoder(encoder)
        rows = list(rows)
        known = {r.id for r in self.rows}
        for row in rows:
            if not row.labels:
                raise DataError("row has no label", line=row.line, field="label")
            if row.id in known:
                raise DataError(f"id '{row.id}' is already in the index", line=row.line, field="id")
        if not rows:
            return 0
        vectors = encode_with_cache(encoder, [r.text for r in rows], cache, batch_size=batch_size,
                                    show_progress_bar=show_progress)
        self.faiss_index.add(vectors)
        self.rows.extend(rows)
        self.label_names = sorted(set(self.label_names) | {lab for r in rows for lab in r.labels})
        if not self.multi_label and any(len(r.labels) > 1 for r in rows):
            self.multi_label = True
        self.tuning = None if self.tuning is None else {**self.tuning, "stale": True}
        return len(rows)

    # ---- using ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    @property
    def fingerprint(self) -> str:
        return data_fingerprint(self.rows)

    def label_matrix(self) -> np.ndarray:
        """(n_rows, n_labels) booleans in `label_names` order."""
        return label_matrix(self.rows, self.label_names, "the index")

    def encode_queries(self, encoder: SupportsEncode, texts: Sequence[str], *,
                       cache: EmbeddingCache | None = None, batch_size: int = 32,
                       show_progress: bool = False) -> np.ndarray:
        self.check_encoder(encoder)
        return encode_with_cache(encoder, texts, cache, batch_size=batch_size, show_progress_bar=show_progress)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarities and row numbers of the k nearest rows (row -1 where fewer exist)."""
        k = max(1, min(int(k), len(self.rows)))
        sims, ids = self.faiss_index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        return sims, ids

    def load_encoder(self, device: str | None = None):
        """The encoder meta.json names, with the prefix and maximum length the index was built with, checked
        against the index: the common path needs no encoder passed around."""
        from fewlabel.indexing.encoders.encoder import Encoder

        encoder = Encoder(self.encoder["model"], device=device, max_length=self.encoder.get("max_length"),
                          prefix=self.encoder.get("prefix"))
        self.check_encoder(encoder)
        return encoder

    def check_encoder(self, encoder: SupportsEncode) -> None:
        """Refuse an encoder whose vectors would not be comparable with the stored ones."""
        theirs = encoder.describe(normalize=True)
        diffs = [f"{key}: index has {self.encoder.get(key)!r}, encoder has {theirs.get(key)!r}"
                 for key in ENCODER_KEYS if self.encoder.get(key) != theirs.get(key)]
        if diffs:
            raise IndexMismatchError("encoder does not match the index (" + "; ".join(diffs) + ")")

    def meta(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "fewlabel_version": fewlabel_version(),
            "encoder": self.encoder,
            "faiss": {"factory": self.factory, "metric": "inner_product", "ntotal": int(self.faiss_index.ntotal),
                      "search_params": self.search_params},
            "labels": self.label_names,
            "multi_label": self.multi_label,
            "n_rows": len(self.rows),
            "data_fingerprint": self.fingerprint,
            "tuning": self.tuning,
            **self.extra,
        }

    # ---- disk -----------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write the index folder atomically (all files or none)."""
        import faiss

        folder = Path(folder)
        with atomic_directory(folder) as tmp:
            faiss.write_index(self.faiss_index, str(tmp / INDEX_FILE))
            with open(tmp / ROWS_FILE, "w", encoding="utf-8") as fh:
                for row in self.rows:
                    fh.write(json.dumps({"id": row.id, "labels": list(row.labels), "text": row.text},
                                        ensure_ascii=False) + "\n")
            (tmp / META_FILE).write_text(json.dumps(self.meta(), ensure_ascii=False, indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path, encoder: SupportsEncode | None = None) -> LabelIndex:
        """Read an index folder, checking format, counts, dimension and fingerprint agree, and, when
        `encoder` is given, that it makes the same kind of vectors as the ones stored."""
        import faiss

        folder = Path(folder)
        if not folder.is_dir():
            raise IndexMismatchError(f"{folder}: no such index folder")
        for name in (META_FILE, INDEX_FILE, ROWS_FILE):
            if not (folder / name).is_file():
                raise IndexMismatchError(f"{folder}: not a fewlabel index ({name} is missing)")
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise IndexMismatchError(f"{folder / META_FILE}: corrupt JSON at line {exc.lineno}") from exc
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexMismatchError(f"{folder / META_FILE}: index format {version!r}; this fewlabel reads "
                                     f"format {FORMAT_VERSION} (rebuild the index with `fewlabel index build`)")
        try:
            index = faiss.read_index(str(folder / INDEX_FILE))
        except RuntimeError as exc:
            raise IndexMismatchError(f"{folder / INDEX_FILE}: corrupt FAISS index") from exc
        rows = []
        with open(folder / ROWS_FILE, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                try:
                    item = json.loads(line)
                    rows.append(Row(text=item["text"], labels=tuple(item["labels"]), id=str(item["id"]),
                                    line=line_no))
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise IndexMismatchError(f"{folder / ROWS_FILE}, line {line_no}: corrupt row") from exc
        dim = meta.get("encoder", {}).get("dim")
        problems = []
        if index.d != dim:
            problems.append(f"index.faiss has dimension {index.d}, meta.json says {dim}")
        if index.ntotal != len(rows):
            problems.append(f"index.faiss holds {index.ntotal} vectors, rows.jsonl has {len(rows)} rows")
        if meta.get("data_fingerprint") != data_fingerprint(rows):
            problems.append("rows.jsonl does not match the data fingerprint in meta.json")
        if problems:
            raise IndexMismatchError(f"{folder}: inconsistent index (" + "; ".join(problems) + ")")
        known = set(meta.get("labels", []))
        stray = sorted({lab for r in rows for lab in r.labels} - known)
        if stray:
            raise IndexMismatchError(f"{folder}: rows carry labels missing from meta.json: {stray[:5]}")
        standard = {"format_version", "fewlabel_version", "encoder", "faiss", "labels", "multi_label",
                    "n_rows", "data_fingerprint", "tuning"}
        loaded = cls(encoder=meta["encoder"], factory=meta["faiss"]["factory"], rows=rows,
                     label_names=list(meta["labels"]), multi_label=bool(meta["multi_label"]), faiss_index=index,
                     tuning=meta.get("tuning"), extra={k: v for k, v in meta.items() if k not in standard},
                     search_params=meta["faiss"].get("search_params"))
        apply_search_params(index, loaded.search_params, loaded.factory)
        if encoder is not None:
            loaded.check_encoder(encoder)
        return loaded
