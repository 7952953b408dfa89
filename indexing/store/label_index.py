"""`LabelIndex`: labelled texts as vectors in a vector store, saved as a self-describing folder.

A saved index is a folder holding `index.faiss` (the vectors; or, with the Milvus store, a collection that
meta.json names: see `fewlabel.indexing.store.vector_store`), `rows.jsonl` (id, labels and text of
every vector, in index order) and `meta.json` (the encoder and its settings, label names, the tuned
k and m with the scores that chose them, a fingerprint of the data, format and fewlabel versions), plus, when
the index labels with a method other than the kNN vote, `method/` (that method's files: plain JSON and
numpy arrays, never pickle). This module stores those files generically and records their sha256 in
``meta.json["method"]["files"]``; a file that no longer matches is refused on load. What they mean is
`fewlabel.retrieval.methods`' business.
Saving goes through a temporary folder and one rename, so an interrupted save leaves the old index
whole. Loading checks every part against the others and against the encoder it will be used with.

Voting on neighbours lives in `retrieval`; this module only stores and searches."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np

from fewlabel.indexing.encoders.cache import EmbeddingCache, SupportsEncode, encode_with_cache
from fewlabel.indexing.errors import DataError, IndexMismatchError
from fewlabel.indexing.files import atomic_directory, folder_lock, recover_directory, refuse_foreign
from fewlabel.indexing.readers import Row, label_matrix
from fewlabel.indexing.store.vector_store import VectorStore, create_store, open_store, release_replaced, store_kind

if TYPE_CHECKING:
    from fewlabel.indexing.store.faiss_store import FaissStore

FORMAT_VERSION = 1
INDEX_FILE, ROWS_FILE, META_FILE = "index.faiss", "rows.jsonl", "meta.json"
METHOD_DIR = "method"
# a method file: a plain name, or a path of up to four plain names (a trained head's model folder); no part
# starts with a dot, so nothing can climb out of method/
_METHOD_FILE_NAME = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}/){0,3}[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
ENCODER_KEYS = ("model", "prefix", "pooling", "normalize", "dim", "max_length")


class IndexEncoder(SupportsEncode, Protocol):
    """What an index needs of its encoder: the embedding cache's contract plus `describe`, which meta.json
    records so that later queries are encoded the same way."""

    def describe(self, normalize: bool = True) -> dict: ...


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
    store: VectorStore  # FAISS or Milvus: the only part that differs between them
    tuning: dict | None = None
    extra: dict = field(default_factory=dict)
    search_params: str | None = None
    method: dict | None = None  # meta.json["method"]: which method labels (None: the kNN vote), its leaderboard
    method_files: dict[str, bytes] = field(default_factory=dict)  # that method's files, kept in method/
    # meta.json["label_descriptions"]: {"labels": {label: [description, …]}, "template": str | None}. What each
    # label means in words (`index build --label-names`): the zero-shot and label-prior methods embed them, so an
    # index can label with few rows or none. A label without a description is described by its own name.
    descriptions: dict | None = None
    # meta.json["pseudo_labelled"]: {"ids": [row ids], …how they were chosen}. Rows labelled by the index itself
    # from unlabelled texts (self-training, `index build --unlabelled`), replaced when real labels for the same
    # texts are added.
    pseudo: dict | None = None
    replaced_pseudo_: int = field(default=0, repr=False, compare=False)  # by the last add

    # ---- building -------------------------------------------------------------------------------
    @classmethod
    def build(cls, rows: Sequence[Row], encoder: IndexEncoder, *, factory: str = "Flat",
              multi_label: bool | None = None, cache: EmbeddingCache | None = None,
              batch_size: int = 32, show_progress: bool = False, search_params: str | None = None,
              store: str = "faiss", store_options: dict | None = None,
              descriptions: dict | None = None) -> LabelIndex:
        """Encode `rows` and index them. `multi_label=None` decides from the data: multi-label
        when any row carries two or more labels. `search_params` (e.g. ``efSearch=128``): see
        :func:`~fewlabel.indexing.store.faiss_factory.apply_search_params`. ``store="milvus"`` keeps the vectors in
        a Milvus collection (``store_options``: ``uri``, optional ``collection``; `factory` is then a Milvus index
        type such as FLAT or HNSW). ``descriptions`` (see the field): labels described in words join the
        index's labels even without rows, and an index of descriptions alone (no rows) is allowed."""
        rows = list(rows)
        descriptions = check_descriptions(descriptions)
        if not rows and descriptions is None:
            raise DataError("no labelled rows to index (an index without rows needs label descriptions)")
        unlabelled = next((r for r in rows if not r.labels), None)
        if unlabelled is not None:
            raise DataError("row has no label", line=unlabelled.line, field="label")
        vectors = encode_with_cache(encoder, [r.text for r in rows], cache, batch_size=batch_size,
                                    show_progress_bar=show_progress)
        vector_store = create_store(store, vectors, rows, factory=factory, search_params=search_params,
                                    options=store_options, quiet=not show_progress)
        names = sorted({label for r in rows for label in r.labels} | set((descriptions or {}).get("labels", {})))
        if multi_label is None:
            multi_label = any(len(r.labels) > 1 for r in rows)
        meta = {**encoder.describe(normalize=True), **_weights_record(encoder)}
        return cls(encoder=meta, factory=factory, rows=rows, label_names=names, multi_label=multi_label,
                   store=vector_store, search_params=search_params or None, descriptions=descriptions)

    def add(self, rows: Sequence[Row], encoder: IndexEncoder, *, cache: EmbeddingCache | None = None,
            batch_size: int = 32, show_progress: bool = False, source: str | None = None,
            renumber: bool = False) -> int:
        """Encode and append more rows (new labels are allowed and join `label_names`). Returns the
        number added. Rows whose id is already in the index are refused, naming the file and line.
        ``renumber``: the rows' ids were generated (row numbers, no id column), so they get fresh numbers after
        the index's own instead of colliding with them."""
        self.check_encoder(encoder)
        rows = self.check_new_rows(rows, source=source, renumber=renumber)
        if not rows:
            return 0
        self.replaced_pseudo_ = self._drop_pseudo({r.text for r in rows})
        vectors = encode_with_cache(encoder, [r.text for r in rows], cache, batch_size=batch_size,
                                    show_progress_bar=show_progress)
        self.store.add(vectors, rows)
        self.rows.extend(rows)
        self.label_names = sorted(set(self.label_names) | {lab for r in rows for lab in r.labels})
        if not self.multi_label and any(len(r.labels) > 1 for r in rows):
            self.multi_label = True
        self.tuning = None if self.tuning is None else {**self.tuning, "stale": True}
        self.method = None if self.method is None else {**self.method, "stale": True}
        return len(rows)

    def remove(self, ids: Sequence[str]) -> int:
        """Remove the rows with these ids (the vectors too); a label no row carries any more leaves
        `label_names`. Returns the number removed; an unknown id is refused."""
        wanted = set(ids)
        positions = [i for i, r in enumerate(self.rows) if r.id in wanted]
        missing = wanted - {self.rows[i].id for i in positions}
        if missing:
            raise DataError(f"id '{sorted(missing)[0]}' is not in the index", field="id")
        if len(positions) == len(self.rows):
            raise DataError("cannot remove every row of an index", field="id")
        self.store.remove(positions)
        drop = set(positions)
        self.rows = [r for i, r in enumerate(self.rows) if i not in drop]
        if self.pseudo:
            left = sorted(self.pseudo_ids() - wanted)
            self.pseudo = {**self.pseudo, "ids": left} if left else None
        used = {lab for r in self.rows for lab in r.labels} | set((self.descriptions or {}).get("labels", {}))
        self.label_names = [name for name in self.label_names if name in used]
        self.tuning = None if self.tuning is None else {**self.tuning, "stale": True}
        self.method = None if self.method is None else {**self.method, "stale": True}
        return len(positions)

    def check_new_rows(self, rows: Sequence[Row], *, source: str | None = None,
                       renumber: bool = False) -> list[Row]:
        """The rows :meth:`add` would append, checked (every row labelled, no id already in the index) and, with
        ``renumber``, given fresh ids after the index's own. Cheap: call it before loading a model."""
        rows = list(rows)
        if renumber:
            start = 1 + max((int(r.id) for r in self.rows if r.id.isdigit()), default=-1)
            rows = [Row(text=r.text, labels=r.labels, id=str(start + i), line=r.line) for i, r in enumerate(rows)]
        known = {r.id for r in self.rows}
        for row in rows:
            if not row.labels:
                raise DataError("row has no label", path=source, line=row.line, field="label")
            if row.id in known:
                raise DataError(f"id '{row.id}' is already in the index (ids must be unique: give the file's own "
                                "id column with --id-col, or leave it out and fewlabel numbers the new rows)",
                                path=source, line=row.line, field="id")
        return rows

    # ---- using ----------------------------------------------------------------------------------
    def pseudo_ids(self) -> set[str]:
        """Ids of the rows the index labelled itself (self-training)."""
        return set((self.pseudo or {}).get("ids", []))

    def mark_pseudo(self, ids: Sequence[str], **how) -> None:
        """Record rows already added as pseudo-labelled (``how``: the bar, rounds, source)."""
        known = {r.id for r in self.rows}
        missing = [i for i in ids if i not in known]
        if missing:
            raise DataError(f"id '{missing[0]}' is not in the index", field="id")
        self.pseudo = {**(self.pseudo or {}), **how, "ids": sorted(self.pseudo_ids() | set(ids))}

    def _drop_pseudo(self, texts: set[str]) -> int:
        """Remove the pseudo-labelled rows whose text is in ``texts`` (real labels for them are coming)."""
        pseudo = self.pseudo_ids()
        positions = [i for i, r in enumerate(self.rows) if r.id in pseudo and r.text in texts]
        if not positions:
            return 0
        dropped = {self.rows[i].id for i in positions}
        self.store.remove(positions)
        drop = set(positions)
        self.rows = [r for i, r in enumerate(self.rows) if i not in drop]
        left = sorted(pseudo - dropped)
        self.pseudo = {**(self.pseudo or {}), "ids": left} if left else None
        return len(positions)

    def described_labels(self) -> dict[str, list[str]]:
        """Each label's descriptions (a label without any is described by its name), in `label_names` order."""
        given = (self.descriptions or {}).get("labels", {})
        return {name: list(given.get(name) or [name]) for name in self.label_names}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def fingerprint(self) -> str:
        return data_fingerprint(self.rows)

    def label_matrix(self) -> np.ndarray:
        """(n_rows, n_labels) booleans in `label_names` order."""
        return label_matrix(self.rows, self.label_names, "the index")

    def encode_queries(self, encoder: IndexEncoder, texts: Sequence[str], *,
                       cache: EmbeddingCache | None = None, batch_size: int = 32,
                       show_progress: bool = False) -> np.ndarray:
        self.check_encoder(encoder)
        return encode_with_cache(encoder, texts, cache, batch_size=batch_size, show_progress_bar=show_progress)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarities and row numbers of the k nearest rows (row -1 where fewer exist)."""
        k = max(1, min(int(k), len(self.rows)))
        return self.store.search(np.ascontiguousarray(vectors, dtype=np.float32), k)

    @property
    def faiss_index(self):
        """The FAISS index itself (FAISS store only), for code that tunes FAISS directly."""
        if self.store.kind != "faiss":
            raise IndexMismatchError(f"this index keeps its vectors in {self.store.kind}, not FAISS")
        return cast("FaissStore", self.store).index  # kind "faiss" is FaissStore's

    def use_faiss_device(self, device: str | None) -> str:
        """Search on ``auto``, ``cpu`` or ``cuda`` (a GPU copy of the FAISS index, for search only; the folder
        keeps the CPU index). Returns where search runs. A Milvus store searches where its server does, so only
        auto and cpu are accepted for it."""
        if self.store.kind != "faiss":
            if (device or "auto").lower() == "cuda":
                raise IndexMismatchError(f"--faiss-device cuda applies to a FAISS index; this one keeps its vectors "
                                         f"in {self.store.kind}")
            return "cpu"
        return cast("FaissStore", self.store).use_device(device)  # kind "faiss" is FaissStore's

    def check_weights(self) -> None:
        """Refuse, before loading it, a model whose weight files changed since this index was built."""
        from fewlabel.indexing.encoders.encoder import model_weights

        recorded = self.encoder.get("weights")
        if recorded:
            self._refuse_changed_weights(recorded, model_weights(self.encoder["model"]))

    def _refuse_changed_weights(self, recorded: str, current: str | None) -> None:
        if current and recorded != current:
            raise IndexMismatchError(f"the weights of model '{self.encoder.get('model')}' changed since this index "
                                     f"was built (fingerprint {current}, the index has {recorded}): its vectors "
                                     "would not match; rebuild the index with `fewlabel index build`")

    def load_encoder(self, device: str | None = None, backend: str | None = None):
        """The encoder meta.json names, with the prefix and maximum length the index was built with, checked
        against the index: the common path needs no encoder passed around. ``backend`` None: see
        :func:`~fewlabel.indexing.encoders.onnx_backend.backend_for_index`."""
        from fewlabel.indexing.encoders.encoder import Encoder
        from fewlabel.indexing.encoders.onnx_backend import backend_for_index

        encoder = Encoder(self.encoder["model"], device=device, max_length=self.encoder.get("max_length"),
                          prefix=self.encoder.get("prefix"), backend=backend_for_index(self.encoder, backend))
        self.check_encoder(encoder)
        return encoder

    def check_encoder(self, encoder: IndexEncoder) -> None:
        """Refuse an encoder whose vectors would not be comparable with the stored ones (torch and onnx vectors
        are; int8 vectors are only comparable with int8 ones)."""
        from fewlabel.indexing.encoders.onnx_backend import backend_mismatch

        theirs = encoder.describe(normalize=True)
        diffs = [f"{key}: index has {self.encoder.get(key)!r}, encoder has {theirs.get(key)!r}"
                 for key in ENCODER_KEYS if self.encoder.get(key) != theirs.get(key)]
        diffs += backend_mismatch(self.encoder, theirs)
        if diffs:
            raise IndexMismatchError("encoder does not match the index (" + "; ".join(diffs) + ")")
        recorded = self.encoder.get("weights")
        if recorded:
            self._refuse_changed_weights(recorded, _weights_record(encoder).get("weights"))

    def meta(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "fewlabel_version": fewlabel_version(),
            "encoder": self.encoder,
            **({"faiss": {"factory": self.factory, "metric": "inner_product", "ntotal": int(self.store.ntotal),
                          "search_params": self.search_params}, "store": {"kind": "faiss"}}
               if self.store.kind == "faiss" else {"store": self.store.describe()}),
            "labels": self.label_names,
            "multi_label": self.multi_label,
            "n_rows": len(self.rows),
            "data_fingerprint": self.fingerprint,
            "tuning": self.tuning,
            **({"label_descriptions": self.descriptions} if self.descriptions else {}),
            **({"pseudo_labelled": self.pseudo} if self.pseudo else {}),
            **({"method": {**self.method, "files": {name: hashlib.sha256(data).hexdigest() for name, data
                                                    in sorted(self.method_files.items())}}} if self.method else {}),
            **self.extra,
        }

    # ---- disk -----------------------------------------------------------------------------------
    @classmethod
    @contextmanager
    def update(cls, folder: str | Path, encoder: IndexEncoder | None = None, *,
               waiting: Callable[[str], None] | None = None) -> Iterator[LabelIndex]:
        """Read, change and save an index under its write lock, so that two writers never lose each other's
        rows: ``with LabelIndex.update(folder) as index: index.add(rows, encoder)``. Saved only when the block
        ends without an error."""
        with folder_lock(folder, waiting=waiting):
            index = cls.load(folder, encoder)
            yield index
            index.save(folder)

    def save(self, folder: str | Path) -> Path:
        """Write the index folder atomically (all files or none)."""
        folder = Path(folder)
        claim_index_folder(folder)
        replaced = _store_record(folder)
        with atomic_directory(folder) as tmp:
            self.store.write(tmp)
            with open(tmp / ROWS_FILE, "w", encoding="utf-8") as fh:
                for row in self.rows:
                    fh.write(json.dumps({"id": row.id, "labels": list(row.labels), "text": row.text},
                                        ensure_ascii=False) + "\n")
            if self.method_files:
                (tmp / METHOD_DIR).mkdir()
                for name, data in self.method_files.items():
                    if not _METHOD_FILE_NAME.match(name):
                        raise IndexMismatchError(f"method file name {name!r} is not a plain relative file path")
                    (tmp / METHOD_DIR / name).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / METHOD_DIR / name).write_bytes(data)
            (tmp / META_FILE).write_text(json.dumps(self.meta(), ensure_ascii=False, indent=2), encoding="utf-8")
        self.store.commit()
        release_replaced(replaced, self.store.describe())
        return folder

    def discard(self) -> None:
        """Give up an index that will not be saved (a build that failed after its store was made): a Milvus
        collection it created is dropped; FAISS has nothing outside the folder."""
        self.store.discard()

    @classmethod
    def load(cls, folder: str | Path, encoder: IndexEncoder | None = None, *, mmap: bool = False) -> LabelIndex:
        """Read an index folder, checking format, counts, dimension and fingerprint agree, and, when
        `encoder` is given, that it makes the same kind of vectors as the ones stored. ``mmap``: memory-map
        ``index.faiss`` instead of reading it (`index info`: its vectors are never needed, so a million-vector
        index opens in the time its rows take)."""
        folder = Path(folder)
        recover_directory(folder)  # a writer killed mid-replacement left the old index aside: put it back
        if not folder.is_dir():
            raise IndexMismatchError(f"{folder}: no such index folder")
        for name in (META_FILE, ROWS_FILE):
            if not (folder / name).is_file():
                raise IndexMismatchError(f"{folder}: not a fewlabel index ({name} is missing)")
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise IndexMismatchError(f"{folder / META_FILE}: corrupt JSON at line {exc.lineno}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise IndexMismatchError(f"{folder / META_FILE}: cannot read ({exc})") from exc
        if not isinstance(meta, dict):
            raise IndexMismatchError(f"{folder / META_FILE}: expected a JSON object, found {type(meta).__name__}")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexMismatchError(f"{folder / META_FILE}: index format {version!r}; this fewlabel reads "
                                     f"format {FORMAT_VERSION} (rebuild the index with `fewlabel index build`)")
        rows = []
        with open(folder / ROWS_FILE, encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                try:
                    item = json.loads(line)
                    rows.append(Row(text=item["text"], labels=tuple(item["labels"]), id=str(item["id"]),
                                    line=line_no))
                except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                    raise IndexMismatchError(f"{folder / ROWS_FILE}, line {line_no}: corrupt row") from exc
        _check_meta_fields(meta, folder / META_FILE)
        dim = meta["encoder"]["dim"]
        problems = []
        sound = meta.get("data_fingerprint") == data_fingerprint(rows)
        store = open_store(meta, folder, rows, tidy=sound, mmap=mmap)  # Milvus tidies only for sound rows
        where = INDEX_FILE if store.kind == "faiss" else f"the {store.kind} store"
        if store.d != dim:
            problems.append(f"{where} has dimension {store.d}, meta.json says {dim}")
        if store.ntotal != len(rows):
            problems.append(f"{where} holds {store.ntotal} vectors, rows.jsonl has {len(rows)} rows")
        if not sound:
            problems.append("rows.jsonl does not match the data fingerprint in meta.json")
        if problems:
            raise IndexMismatchError(f"{folder}: inconsistent index (" + "; ".join(problems) + ")")
        known = set(meta.get("labels", []))
        stray = sorted({lab for r in rows for lab in r.labels} - known)
        if stray:
            raise IndexMismatchError(f"{folder}: rows carry labels missing from meta.json: {stray[:5]}")
        method, method_files = _read_method(folder, meta.get("method"))
        standard = {"format_version", "fewlabel_version", "encoder", "faiss", "store", "labels", "multi_label",
                    "n_rows", "data_fingerprint", "tuning", "method", "label_descriptions", "pseudo_labelled"}
        pseudo = meta.get("pseudo_labelled")
        if pseudo is not None and not (isinstance(pseudo, dict) and isinstance(pseudo.get("ids"), list)
                                       and set(pseudo["ids"]) <= {r.id for r in rows}):
            raise IndexMismatchError(f"{folder / META_FILE}: field 'pseudo_labelled' must name ids of rows.jsonl")
        try:
            descriptions = check_descriptions(meta.get("label_descriptions"), known)
        except DataError as exc:
            raise IndexMismatchError(f"{folder / META_FILE}: field 'label_descriptions': {exc}") from exc
        faiss_meta = meta.get("faiss") or {}
        loaded = cls(encoder=meta["encoder"], factory=faiss_meta.get("factory") or meta["store"].get("index_type"),
                     rows=rows, label_names=list(meta["labels"]), multi_label=bool(meta["multi_label"]), store=store,
                     tuning=meta.get("tuning"), extra={k: v for k, v in meta.items() if k not in standard},
                     search_params=faiss_meta.get("search_params"), method=method, method_files=method_files,
                     descriptions=descriptions, pseudo=pseudo)
        if encoder is not None:
            loaded.check_encoder(encoder)
        return loaded


def check_descriptions(descriptions, labels: set[str] | None = None) -> dict | None:
    """``descriptions`` as the index stores them, checked: ``{"labels": {label: [text, …]}, "template": str |
    None}`` with non-empty strings (and, given ``labels``, only labels the index knows). None or no labels: None."""
    if descriptions is None:
        return None
    given = descriptions.get("labels") if isinstance(descriptions, dict) else None
    template = descriptions.get("template") if isinstance(descriptions, dict) else None
    if not isinstance(given, dict) or not (template is None or isinstance(template, str)):
        raise DataError('expected {"labels": {label: [description, …]}, "template": text or null}')
    clean: dict[str, list[str]] = {}
    for name, texts in given.items():
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise DataError(f"label '{name}': descriptions must be a non-empty list of non-empty texts")
        if labels is not None and name not in labels:
            raise DataError(f"label '{name}' is described but is not one of the index's labels")
        clean[str(name)] = [t.strip() for t in texts]
    return {"labels": clean, "template": template} if clean else None


def _check_meta_fields(meta: dict, path: Path) -> None:
    """The fields every index's meta.json must have, with their types: a hand-edited or truncated file is one
    clear error instead of a KeyError later."""
    faiss = store_kind(meta) == "faiss"
    wanted = {"encoder": dict, ("faiss" if faiss else "store"): dict, "labels": list, "multi_label": bool,
              "data_fingerprint": str}
    for key, kind in wanted.items():
        if not isinstance(meta.get(key), kind):
            found = "missing" if key not in meta else f"a {type(meta[key]).__name__}"
            raise IndexMismatchError(f"{path}: field '{key}' should be a JSON {kind.__name__}, it is {found}")
    for key, kind in (("dim", int), ("model", str)):
        if not isinstance(meta["encoder"].get(key), kind):
            raise IndexMismatchError(f"{path}: field 'encoder.{key}' is missing or not a {kind.__name__}")
    if faiss and not isinstance(meta["faiss"].get("factory"), str):
        raise IndexMismatchError(f"{path}: field 'faiss.factory' is missing or not a string")


def _read_method(folder: Path, record) -> tuple[dict | None, dict[str, bytes]]:
    """``meta.json["method"]`` and the files it names, each checked against its recorded sha256: a method file
    changed after the index was written (by hand, a bad copy, or someone who sent you the folder) is refused
    rather than used."""
    if record is None:
        return None, {}
    where = folder / META_FILE
    if not isinstance(record, dict) or not isinstance(record.get("name"), str) or \
            not isinstance(record.get("files", {}), dict):
        raise IndexMismatchError(f"{where}: field 'method' should be a JSON object with a 'name' and 'files'")
    record = dict(record)
    recorded = record.pop("files", {}) or {}
    files = {}
    for name, digest in recorded.items():
        path = folder / METHOD_DIR / str(name)
        if not _METHOD_FILE_NAME.match(str(name)) or not isinstance(digest, str):
            raise IndexMismatchError(f"{where}: method file {name!r} is not a plain relative file path with a sha256")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise IndexMismatchError(f"{folder}: the method's file {METHOD_DIR}/{name} is missing or unreadable "
                                     f"({type(exc).__name__}); rebuild the index") from exc
        if hashlib.sha256(data).hexdigest() != digest:
            raise IndexMismatchError(f"{folder}: {METHOD_DIR}/{name} was changed after the index was written (its "
                                     "sha256 does not match meta.json); refusing to use it: rebuild the index")
        files[name] = data
    return record, files


def _store_record(folder: Path) -> dict | None:
    """The store an index folder about to be replaced names (its Milvus collection is dropped once the new
    folder is in place)."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return meta.get("store") if isinstance(meta, dict) and isinstance(meta.get("store"), dict) else None


def claim_index_folder(folder: str | Path, option: str = "--out") -> None:
    """Refuse to write an index over a folder or file that is not a fewlabel index (a user's folder, the folder
    holding the data, ``.``): it would be replaced whole."""
    refuse_foreign(folder, folder=True, what="a fewlabel index", ours=is_index_folder, option=option)


def is_index_folder(path: Path) -> bool:
    """Whether ``path`` holds a fewlabel index (its meta.json says so): the only kind of folder `index build
    --out` may replace."""
    try:
        meta = json.loads((Path(path) / META_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(meta, dict) and "format_version" in meta and "encoder" in meta


def _weights_record(encoder: SupportsEncode) -> dict:
    """``{"weights": fingerprint}`` of the encoder's weight files when it can tell (fewlabel's Encoder), so an
    index refuses a model folder retrained in place."""
    fingerprint = getattr(encoder, "weights_fingerprint", None)
    return {"weights": fingerprint()} if callable(fingerprint) else {}
