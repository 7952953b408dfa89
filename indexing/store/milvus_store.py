"""The Milvus implementation of the vector store: the rows' vectors, ids, labels and texts in one collection, so
that an index of millions of labelled examples can live in a vector database that several services share.

The URI is a Milvus Lite file (``labels.db``: embedded, no server) or a Milvus server URL
(``http://host:19530``). The collection's primary key is the row id; positions (the row order of the index
folder's ``rows.jsonl``, which the vote reads labels from) are mapped from the ids here. The metric is inner
product over unit vectors (cosine), as with FAISS, and the index type defaults to FLAT (exact).

Consistency with the folder: rows are upserted *before* the folder that names them is saved and deleted only
*after* it is saved, so the collection always holds at least the rows the folder names. Rows left over by a writer
that died in between are removed the next time the index is opened. A new build writes a new collection; saving
it over an index folder drops the collection that folder used before.

Milvus Lite holds its file for one process at a time (the first to open it): `fewlabel serve`, `predict` and
`index add` on one Milvus Lite index must take turns, and a shared index needs a Milvus server."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from fewlabel.indexing.errors import (
    DataError,
    FewlabelError,
    IndexMismatchError,
    InvalidArgumentError,
    SetupError,
    first_line,
)
from fewlabel.indexing.readers import Row

__all__ = ["MilvusStore", "check_collection_name", "drop_collection", "normalise_uri"]

PK, VECTOR, LABELS, TEXT = "pk", "vector", "labels", "text"
MAX_ID_BYTES, MAX_TEXT_BYTES, MAX_LABELS, MAX_LABEL_BYTES = 1024, 65535, 1024, 1024
INSERT_CHUNK, SEARCH_CHUNK = 512, 512
STRONG = "Strong"  # a search right after an insert sees it (the default, Bounded, may not)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_clients: dict[str, object] = {}


def normalise_uri(uri: str) -> str:
    """A server URL as given; a Milvus Lite file as an absolute path (meta.json is read from other folders)."""
    uri = str(uri).strip()
    if not uri:
        raise InvalidArgumentError("--milvus-uri is empty: give a Milvus Lite file (PATH.db) or a server URL")
    if "://" in uri:
        return uri
    path = Path(uri).expanduser()
    if path.suffix != ".db":
        raise InvalidArgumentError(f"--milvus-uri {uri}: a Milvus Lite file must end in .db (or give a server URL such "
                            "as http://localhost:19530)")
    return str(path.resolve())


def check_collection_name(name: str | None) -> str | None:
    if name is not None and not _NAME.match(name):
        raise InvalidArgumentError(f"--milvus-collection '{name}': letters, digits and underscores only, not starting "
                            "with a digit")
    return name


def _client(uri: str):
    """One client per URI and process (Milvus Lite allows one process per file, and this process may open the
    same file for several indexes)."""
    if uri in _clients:
        return _clients[uri]
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise SetupError("the Milvus store needs pymilvus: pip install 'fewlabel[milvus]'") from exc
    import logging

    for name in ("pymilvus", "milvus_lite"):  # their errors (RPC, a locked file) come back as one line each, below
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        client = MilvusClient(uri)
    except Exception as exc:  # pymilvus raises its own exception types for a locked file or a dead server
        if "://" not in uri:
            raise SetupError(f"cannot open the Milvus Lite file {uri}: {first_line(exc)} (Milvus Lite lets one "
                                "process at a time open a file: is `fewlabel serve` or another command using "
                                "it? A shared index needs a Milvus server)") from exc
        raise SetupError(f"cannot reach Milvus at {uri}: {first_line(exc)}") from exc
    _clients[uri] = client
    return client


def _milvus_error(what: str, exc: Exception) -> FewlabelError:
    message = first_line(exc)  # pymilvus can quote a whole vector back: keep the line readable
    return SetupError(f"Milvus could not {what}: {message[:300] + ' …' if len(message) > 300 else message}")


def parse_index_type(factory: str | None) -> tuple[str, dict]:
    """``FLAT``, ``HNSW``, ``IVF_FLAT:nlist=128``, ``HNSW:M=16,efConstruction=200`` … (FAISS's ``Flat``, the
    default of `index build --factory`, means FLAT): the index type and its build parameters."""
    name, _, params = (factory or "FLAT").partition(":")
    name = name.strip().upper()
    return name, _parse_params(params, "--factory")


def _parse_params(text: str | None, option: str) -> dict:
    out: dict = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidArgumentError(f"{option} '{text}': expected name=value pairs separated by commas")
        value = value.strip()
        try:
            out[key.strip()] = int(value)
        except ValueError:
            try:
                out[key.strip()] = float(value)
            except ValueError:
                out[key.strip()] = value
    return out


def _check_rows(rows: Sequence[Row]) -> None:
    """What the collection's fields can hold, checked before anything is written, naming the row (the id is the
    collection's key, so it must be unique)."""
    first: dict[str, int] = {}
    for row in rows:
        if first.setdefault(row.id, row.line) != row.line:
            raise DataError(f"duplicate id '{row.id}' (first on line {first[row.id]}): the Milvus store keys rows by "
                            "id; give unique ids with --id-col", line=row.line, field="id")
        if len(row.id.encode()) > MAX_ID_BYTES:
            raise DataError(f"id longer than Milvus's {MAX_ID_BYTES}-byte key", line=row.line, field="id")
        if len(row.text.encode()) > MAX_TEXT_BYTES:
            raise DataError(f"text longer than the {MAX_TEXT_BYTES:,} bytes a Milvus VARCHAR holds (use the "
                            "FAISS store for longer texts)", line=row.line, field="text")
        if len(row.labels) > MAX_LABELS or any(len(lab.encode()) > MAX_LABEL_BYTES for lab in row.labels):
            raise DataError(f"more than {MAX_LABELS} labels, or a label over {MAX_LABEL_BYTES} bytes",
                            line=row.line, field="label")


def drop_collection(record: dict) -> None:
    """Drop the collection a replaced index folder used (best effort: a server that is gone keeps it)."""
    try:
        client = _client(record["uri"])
        if client.has_collection(record["collection"]):
            client.drop_collection(record["collection"])
    except Exception:  # noqa: BLE001 - the new index is saved; an old collection left behind costs only space
        pass


class MilvusStore:
    """A Milvus collection behind the :class:`~fewlabel.indexing.store.vector_store.VectorStore` interface."""

    kind = "milvus"
    metric_type = 0  # faiss.METRIC_INNER_PRODUCT, without importing FAISS

    def __init__(self, client, uri: str, collection: str, dim: int, ids: Sequence[str], *, index_type: str,
                 index_params: dict, search_params: dict, created: bool = False) -> None:
        self.client, self.uri, self.collection, self.d = client, uri, collection, int(dim)
        self.index_type, self.index_params, self.search_params = index_type, index_params, search_params
        self._ids = list(ids)
        self._pos = {pk: i for i, pk in enumerate(self._ids)}
        self._deleted: list[str] = []  # deleted from the rows, removed from the collection at commit()
        self._created = created  # made by build() and not yet saved: discard() drops it

    # ---- making and opening ---------------------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: np.ndarray, rows: Sequence[Row], *, uri: str, collection: str | None = None,
              index_type: str | None = "FLAT", search_params: str | None = None) -> MilvusStore:
        """A new collection holding ``rows`` and their ``vectors``. An existing collection is never reused: it
        may belong to another index."""
        from pymilvus import DataType

        uri = normalise_uri(uri)
        name = check_collection_name(collection) or f"fewlabel_{uuid.uuid4().hex[:16]}"
        kind, params = parse_index_type("FLAT" if (index_type or "").lower() == "flat" else index_type)
        searching = _parse_params(search_params, "--search-params")
        _check_rows(rows)
        dim = int(vectors.shape[1])
        client = _client(uri)
        if client.has_collection(name):
            raise InvalidArgumentError(
                f"Milvus collection '{name}' already exists at {uri}; fewlabel never writes into a "
                                "collection it did not just create: choose another --milvus-collection")
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(PK, DataType.VARCHAR, is_primary=True, max_length=MAX_ID_BYTES)
        schema.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field(LABELS, DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_LABELS,
                         max_length=MAX_LABEL_BYTES)
        schema.add_field(TEXT, DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
        index_params = client.prepare_index_params()
        index_params.add_index(field_name=VECTOR, index_type=kind, metric_type="IP", params=params)
        try:
            client.create_collection(name, schema=schema, index_params=index_params, consistency_level=STRONG)
        except Exception as exc:  # noqa: BLE001 - an unknown index type or bad parameter: one line
            raise _milvus_error(f"create collection '{name}' with index {kind} {params or ''}".rstrip(), exc) from exc
        store = cls(client, uri, name, dim, [], index_type=kind, index_params=params, search_params=searching,
                    created=True)
        try:
            store.add(vectors, rows)
        except BaseException:
            store.discard()
            raise
        return store

    @classmethod
    def open(cls, record: dict, rows: Sequence[Row], *, folder: Path | None = None, tidy: bool = True) -> MilvusStore:
        """The collection a meta.json ``store`` record names, checked against the folder's rows; with ``tidy``,
        rows a killed writer left in the collection are removed."""
        where = f"{folder}: " if folder is not None else ""
        try:
            uri, name = str(record["uri"]), str(record["collection"])
        except (KeyError, TypeError) as exc:
            raise IndexMismatchError(f"{where}meta.json's store record lacks the Milvus uri or collection") from exc
        client = _client(uri)
        if not client.has_collection(name):
            raise IndexMismatchError(f"{where}Milvus collection '{name}' is not at {uri} (dropped, or another "
                                     "database?)")
        try:
            client.load_collection(name)  # a reopened collection starts released: nothing can search it
        except Exception as exc:  # noqa: BLE001
            raise _milvus_error(f"load collection '{name}'", exc) from exc
        fields = {f["name"]: f for f in client.describe_collection(name)["fields"]}
        dim = int((fields.get(VECTOR, {}).get("params") or {}).get("dim", -1))
        store = cls(client, uri, name, dim, [r.id for r in rows], index_type=record.get("index_type", "FLAT"),
                    index_params=record.get("index_params") or {}, search_params=record.get("search_params") or {})
        if tidy and store.count() != len(rows):
            store._reconcile(where)
        return store

    def _reconcile(self, where: str) -> None:
        stored = set(self._all_keys())
        missing = [pk for pk in self._ids if pk not in stored]
        if missing:
            raise IndexMismatchError(f"{where}Milvus collection '{self.collection}' lacks {len(missing)} of the "
                                     f"folder's rows (e.g. id '{missing[0]}'): rebuild the index")
        strays = sorted(stored - set(self._ids))
        for start in range(0, len(strays), INSERT_CHUNK):
            self.client.delete(self.collection, ids=strays[start:start + INSERT_CHUNK])

    def _all_keys(self) -> Iterator[str]:
        iterator = self.client.query_iterator(self.collection, batch_size=1000, filter="", output_fields=[PK],
                                              consistency_level=STRONG)
        try:
            while batch := iterator.next():
                yield from (item[PK] for item in batch)
        finally:
            iterator.close()

    def count(self) -> int:
        result = self.client.query(self.collection, filter="", output_fields=["count(*)"], consistency_level=STRONG)
        return int(result[0]["count(*)"])

    # ---- the interface --------------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return len(self._ids)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, k = len(vectors), int(k)
        sims = np.full((n, k), -np.finfo(np.float32).max, dtype=np.float32)
        ids = np.full((n, k), -1, dtype=np.int64)
        limit = min(k + len(self._deleted), max(1, len(self._ids) + len(self._deleted)))
        params = {"metric_type": "IP", "params": self.search_params}
        for start in range(0, n, SEARCH_CHUNK):
            chunk = vectors[start:start + SEARCH_CHUNK]
            try:
                hits = self.client.search(self.collection, data=chunk.tolist(), limit=limit, output_fields=[],
                                          search_params=params, consistency_level=STRONG)
            except Exception as exc:  # noqa: BLE001
                raise _milvus_error(f"search collection '{self.collection}'", exc) from exc
            for row, found in enumerate(hits, start=start):
                j = 0
                for hit in found:
                    pos = self._pos.get(hit["id"] if "id" in hit else hit[PK])
                    if pos is None:  # deleted here, not yet saved
                        continue
                    sims[row, j], ids[row, j] = hit["distance"], pos
                    j += 1
                    if j == k:
                        break
        return sims, ids

    def add(self, vectors: np.ndarray, rows: Sequence[Row]) -> None:
        rows = list(rows)
        _check_rows(rows)
        if len(rows) != len(vectors):
            raise InvalidArgumentError(f"{len(rows)} rows but {len(vectors)} vectors")
        for start in range(0, len(rows), INSERT_CHUNK):
            data = [{PK: r.id, VECTOR: v.tolist(), LABELS: list(r.labels), TEXT: r.text}
                    for r, v in zip(rows[start:start + INSERT_CHUNK], vectors[start:start + INSERT_CHUNK],
                                    strict=True)]
            try:
                self.client.upsert(self.collection, data)  # upsert: a row a killed writer left is replaced
            except Exception as exc:  # noqa: BLE001
                raise _milvus_error(f"write to collection '{self.collection}'", exc) from exc
        for row in rows:
            if row.id in self._deleted:
                self._deleted.remove(row.id)
            self._pos[row.id] = len(self._ids)
            self._ids.append(row.id)

    def remove(self, positions: Sequence[int]) -> None:
        drop = {int(p) for p in positions}
        self._deleted += [pk for i, pk in enumerate(self._ids) if i in drop]
        self._ids = [pk for i, pk in enumerate(self._ids) if i not in drop]
        self._pos = {pk: i for i, pk in enumerate(self._ids)}

    def write(self, folder: Path) -> None:
        """Nothing in the folder: meta.json's store record names the collection."""

    def commit(self) -> None:
        if self._deleted:
            try:
                self.client.delete(self.collection, ids=list(self._deleted))
            except Exception as exc:  # noqa: BLE001 - the rows are gone from the folder; next open removes them
                raise _milvus_error(f"delete from collection '{self.collection}'", exc) from exc
            self._deleted = []
        self._created = False

    def discard(self) -> None:
        if self._created:
            drop_collection({"uri": self.uri, "collection": self.collection})
            self._created = False

    def describe(self) -> dict:
        return {"kind": self.kind, "uri": self.uri, "collection": self.collection, "index_type": self.index_type,
                "index_params": self.index_params, "metric": "inner_product", "ntotal": self.ntotal,
                "search_params": self.search_params}
