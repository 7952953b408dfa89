"""What `fewlabel serve` serves, loaded once: the index with its own encoder, the embedding cache, the STS scorer
(the index's encoder unless ``--sts-model``) and the zero-shot scorers (NLI with ``--nli-model``, else embeddings).

Labels come from the same router as `fewlabel predict` (`fewlabel.retrieval.router.Predictor`, one per (k,
fallback), rebuilt when the index changes), so the service and the CLI agree label for label.

Live examples are written as `fewlabel index add` writes: under the index folder's lock, read afresh, changed and
saved atomically (`LabelIndex.update`). Readers and the writer of one process are kept apart by a readers-writer
lock; other processes (uvicorn workers, a CLI) are seen through the folder: each request first checks whether
``meta.json`` was replaced since the index was loaded, and reloads it if so."""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fewlabel.indexing.errors import FewlabelError, SetupError
from fewlabel.indexing.readers import Row

if TYPE_CHECKING:
    from fewlabel.retrieval.zeroshot.scorers import EmbeddingZeroShot, NLIZeroShot

__all__ = ["ENV_SETTINGS", "RequestError", "ServeSettings", "Service"]

ENV_SETTINGS = "FEWLABEL_SERVE_SETTINGS"  # how uvicorn's worker processes get the settings


class RequestError(FewlabelError):
    """A request the service refuses: ``status`` is the HTTP code and ``loc`` the field, as FastAPI's 422s have."""

    def __init__(self, status: int, message: str, loc: Sequence[str | int] = ()) -> None:
        super().__init__(message)
        self.status, self.loc = status, list(loc)


@dataclass
class ServeSettings:
    """Everything a worker needs to load the service (JSON-ready, so uvicorn's workers get it by environment)."""

    index_dir: str
    token: str | None = None
    sts_model: str | None = None
    nli_model: str | None = None
    device: str | None = None
    backend: str | None = None  # the encoder's (None: one that makes the index's kind of vectors)
    faiss_device: str = "auto"  # where FAISS searches: auto, cpu or cuda (a GPU copy of the index)
    batch_size: int = 32
    cache: bool = True
    max_batch: int = 64
    max_text_chars: int = 10_000
    timeout_s: float = 30.0
    max_labels_per_row: int = 64  # a live example's labels; more is a 413
    max_index_labels: int = 2_000  # distinct labels live examples may bring the index to; more is a 413
    # dynamic batching and process settings (see .batching and .shutdown); max_batch_tokens 0: no batching
    max_batch_tokens: int = 8192
    max_wait_ms: float = 5.0
    encode_lanes: int = 1
    max_queue: int = 1024
    workers: int = 1
    drain_s: float = 20.0
    pool: str | None = None  # the unlabelled texts /suggest and the /ui page pick from (--pool)
    pool_text_col: str = "text"
    pool_id_col: str | None = None

    @property
    def max_body_bytes(self) -> int:
        """A request body can hold max_batch texts of max_text_chars (4 bytes each in UTF-8 at most, JSON escapes
        aside), plus room for the rest; anything larger is refused before it is read."""
        return self.max_batch * self.max_text_chars * 6 + 65_536

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServeSettings:
        raw = os.environ.get(ENV_SETTINGS)
        if not raw:
            raise SetupError(f"{ENV_SETTINGS} is not set: start the service with `fewlabel serve INDEX_DIR`")
        return cls(**json.loads(raw))


class ReadWriteLock:
    """Many readers (classify, embed, …) or one writer (live examples, reload) at a time; a waiting writer goes
    before new readers, so a stream of reads cannot starve it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def _stamp(folder: Path) -> tuple[int, int] | None:
    """Changes whenever the index folder is replaced (every save replaces meta.json)."""
    try:
        st = (folder / "meta.json").stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


class Service:
    """The loaded models and the index, and one method per route."""

    def __init__(self, settings: ServeSettings) -> None:
        from fewlabel.indexing.encoders.cache import default_cache_path
        from fewlabel.indexing.store.label_index import LabelIndex
        from fewlabel.retrieval.serve.batching import batched_encoder
        from fewlabel.retrieval.sts.scorer import STSScorer
        from fewlabel.retrieval.zeroshot.scorers import EmbeddingZeroShot, NLIZeroShot

        self.settings = settings
        self.folder = Path(settings.index_dir)
        self.lock = ReadWriteLock()
        self._cache_path = default_cache_path() if settings.cache else None
        self._local = threading.local()  # SQLite connections are per thread
        self._stamp_seen = _stamp(self.folder)
        self.index = LabelIndex.load(self.folder)
        self.index.use_faiss_device(settings.faiss_device)
        self.encoder = batched_encoder(self.index.load_encoder(settings.device, settings.backend), settings)
        self.sts = STSScorer(settings.sts_model, device=settings.device, batch_size=settings.batch_size) \
            if settings.sts_model else STSScorer(self.encoder, batch_size=settings.batch_size)
        self.nli = NLIZeroShot(settings.nli_model, device=settings.device, batch_size=settings.batch_size) \
            if settings.nli_model else None
        self._embed_zero_shot = {flag: EmbeddingZeroShot(self.encoder, multi_label=flag, batch_size=settings.batch_size)
                                 for flag in (False, True)}
        self._predictors: dict[tuple[int | None, str], object] = {}

    # ---- shared state ---------------------------------------------------------------------------------------
    @property
    def cache(self):
        """This thread's connection to the embedding cache (None with --no-cache)."""
        if self._cache_path is None:
            return None
        cache = getattr(self._local, "cache", None)
        if cache is None:
            from fewlabel.indexing.encoders.cache import EmbeddingCache

            cache = self._local.cache = EmbeddingCache(self._cache_path)
        return cache

    @contextmanager
    def _index_available(self) -> Iterator[None]:
        """An index folder that can no longer be read (moved away, damaged) is the server's problem, not the
        client's: a 503 that names no server path; the full message goes to the server's log."""
        from fewlabel.indexing.errors import IndexMismatchError

        try:
            yield
        except (IndexMismatchError, OSError) as exc:
            print(f"fewlabel serve: index unavailable: {exc}", file=sys.stderr, flush=True)
            raise RequestError(503, "index unavailable: the server cannot read its index folder (see the "
                                    "server's log)") from exc

    def _refresh(self) -> None:
        """Reload the index when another process (a worker, `fewlabel index add`) replaced the folder."""
        if _stamp(self.folder) == self._stamp_seen:
            return
        from fewlabel.indexing.files import folder_lock
        from fewlabel.indexing.store.label_index import LabelIndex

        # no writer swaps the folder in the middle of the load; a folder gone or unreadable is a 503
        with self.lock.write(), self._index_available(), folder_lock(self.folder):
            stamp = _stamp(self.folder)
            if stamp != self._stamp_seen:
                self.index = LabelIndex.load(self.folder, self.encoder)
                self.index.use_faiss_device(self.settings.faiss_device)
                self._stamp_seen = stamp
                self._predictors.clear()

    def _predictor(self, k: int | None, fallback: str):
        """The router for (k, fallback), as `fewlabel predict --k K --fallback F` builds it: the fallback settings
        stored in the index apply when they were made for the same scorer. Cached until the index changes."""
        from fewlabel.retrieval.router import Predictor, predictor_kwargs
        from fewlabel.retrieval.zeroshot.scorers import EmbeddingZeroShot

        key = (k, fallback)
        if key in self._predictors:
            return self._predictors[key]
        zero_shot: NLIZeroShot | EmbeddingZeroShot | None = None
        kwargs: dict = {}
        if fallback == "nli":
            if self.nli is None:
                raise RequestError(422, "this server has no NLI model: start it with --nli-model", ["body", "fallback"])
            zero_shot = copy.copy(self.nli)
            zero_shot.multi_label = self.index.multi_label
        elif fallback == "embed":
            zero_shot = EmbeddingZeroShot(self.encoder, multi_label=self.index.multi_label, cache=self.cache,
                                          batch_size=self.settings.batch_size)
        if zero_shot is not None:
            stored = self.index.extra.get("fallback") or {}
            same = stored.get("fallback") == zero_shot.kind and (
                zero_shot.kind != "nli"
                or (stored.get("zero_shot") or {}).get("model") == getattr(zero_shot, "location", None))
            kwargs = predictor_kwargs(stored) if same else {}
        try:
            predictor = Predictor(self.index, self.encoder, zero_shot, k=k, batch_size=self.settings.batch_size,
                                  **kwargs)
        except FewlabelError as exc:
            raise RequestError(422, str(exc), ["body", "k"] if k is not None else ["body"]) from exc
        self._predictors[key] = predictor
        return predictor

    def check_count(self, n: int, field: str) -> None:
        if n > self.settings.max_batch:
            raise RequestError(413, f"{n} {field} in one request; this server takes at most "
                                    f"{self.settings.max_batch} (--max-batch)", ["body", field])

    def check_texts(self, texts: Sequence[str], field: str, where: Sequence[Sequence[str | int]] | None = None, *,
                    counted: bool = False) -> None:
        """The server's limits: 413 for too many items, 422 naming the item for an empty or too long text.
        ``where``: the location of each text inside its item (``[i, "text"]`` in rows, ``[i, 1]`` in pairs);
        ``counted``: the items were counted already (a pair holds two texts)."""
        if not counted:
            self.check_count(len(texts), field)
        for i, text in enumerate(texts):
            loc = ["body", field, *(where[i] if where is not None else [i])]
            if not text.strip():
                raise RequestError(422, "empty text", loc)
            if len(text) > self.settings.max_text_chars:
                raise RequestError(422, f"text of {len(text):,} characters; this server takes at most "
                                        f"{self.settings.max_text_chars:,} (--max-text-length)", loc)

    # ---- routes ---------------------------------------------------------------------------------------------
    def info(self) -> dict:
        from fewlabel.indexing.store.label_index import fewlabel_version
        from fewlabel.retrieval.knn.saved_index import resolve_k_m

        self._refresh()
        with self.lock.read():
            index = self.index
            k, m = resolve_k_m(index)
            m = int(m) if float(m).is_integer() else float(m)  # "m": 1, not 1.0 (meta.json may hold 1.0)
            method = getattr(index, "method", None) or index.extra.get("method") or "knn"
            if isinstance(method, dict):  # the method an index chose records its name with its leaderboard
                method = method.get("name") or method.get("chosen") or "knn"
            return {"model": index.encoder["model"], "labels": list(index.label_names),
                    "method": str(method), "n_rows": len(index),
                    "multi_label": index.multi_label, "k": k, "m": m, "store": index.store.describe(),
                    "version": fewlabel_version(), "sts_model": self.settings.sts_model or index.encoder["model"],
                    "zero_shot": ["embed", *(["nli"] if self.nli is not None else [])],
                    "limits": {"max_batch": self.settings.max_batch, "max_text_chars": self.settings.max_text_chars,
                               "timeout_s": self.settings.timeout_s, "max_body_bytes": self.settings.max_body_bytes}}

    def classify(self, texts: list[str], k: int | None, explain: bool, fallback: str) -> list[dict]:
        self.check_texts(texts, "texts")
        self._refresh()
        with self.lock.read():
            if k is not None and k > len(self.index):
                raise RequestError(422, f"k={k} but the index holds {len(self.index)} rows", ["body", "k"])
            predictor = copy.copy(self._predictor(k, fallback))  # shared, but each thread has its own cache
            predictor.cache = self.cache
            predictions = predictor.predict(texts, explain=explain)
        out = []
        for p in predictions:
            item = {"labels": list(p.labels), "scores": p.scores, "route": p.route, "reason": p.reason,
                    "top_similarity": None if math.isnan(p.top_similarity) else p.top_similarity}
            if explain:
                item["neighbours"] = [{key: n[key] for key in ("id", "text", "similarity", "labels")}
                                      for n in p.neighbours]
            out.append(item)
        return out

    def similarity(self, pairs: list[tuple[str, str]]) -> list[float]:
        self.check_count(len(pairs), "pairs")
        texts = [text for pair in pairs for text in pair]
        self.check_texts(texts, "pairs", [[i // 2, i % 2] for i in range(len(texts))], counted=True)
        scorer = copy.copy(self.sts)
        scorer.cache = self.cache
        return [float(s) for s in scorer.predict(pairs)]

    def embed(self, texts: list[str]) -> list[list[float]]:
        from fewlabel.indexing.encoders.cache import encode_with_cache

        self.check_texts(texts, "texts")
        vectors = encode_with_cache(self.encoder, texts, self.cache, batch_size=self.settings.batch_size,
                                    normalize=True)
        return vectors.tolist()

    def zeroshot(self, texts: list[str], labels: list[str], multi_label: bool) -> list[dict]:
        from fewlabel.retrieval.router import Predictor
        from fewlabel.retrieval.zeroshot.labels import parse_labels

        self.check_texts(texts, "texts")
        if len(labels) > self.settings.max_batch:
            raise RequestError(413, f"{len(labels)} labels; this server takes at most {self.settings.max_batch}",
                               ["body", "labels"])
        blank = next((j for j, label in enumerate(labels) if not label.strip()), None)
        if blank is not None:  # dropped silently, it would answer for other labels than were asked
            raise RequestError(422, "empty label", ["body", "labels", blank])
        try:
            label_set = parse_labels(labels)
        except FewlabelError as exc:
            raise RequestError(422, str(exc), ["body", "labels"]) from exc
        scorer: NLIZeroShot | EmbeddingZeroShot
        if self.nli is not None:
            scorer = copy.copy(self.nli)
            scorer.multi_label = multi_label
        else:
            embed = copy.copy(self._embed_zero_shot[multi_label])  # shares its label vectors
            embed.cache = self.cache
            scorer = embed
        predictions = Predictor(None, None, scorer, labels=label_set).predict(texts)
        return [{"labels": list(p.labels), "scores": p.scores, "route": p.route} for p in predictions]

    def add_examples(self, rows: list[dict], ticket=None) -> dict:
        """Encode and add labelled rows, saved under the index lock as `fewlabel index add` saves; ids that are
        not given get the next free numbers. Ids are compared as they are stored (stripped, and Unicode
        NFC-equal ids are the same id), within the request and against the index. ``ticket``: the guard's
        :class:`~fewlabel.retrieval.serve.app.WriteTicket`; the rows are saved only if the timeout has not
        cancelled the request first, so the answer is always the real outcome."""
        from fewlabel.indexing.store.label_index import LabelIndex

        self.check_texts([r["text"] for r in rows], "rows", [[i, "text"] for i in range(len(rows))])
        seen: dict[str, int] = {}
        ids: list[str | None] = []
        new_labels: set[str] = set()
        for i, row in enumerate(rows):
            row_id = None
            if row.get("id") is not None:
                row_id = row["id"].strip()
                loc: list[str | int] = ["body", "rows", i, "id"]
                if not row_id:
                    raise RequestError(422, "empty id", loc)
                if len(row_id) > MAX_ID_CHARS or not row_id.isprintable():
                    raise RequestError(422, f"an id is at most {MAX_ID_CHARS} printable characters", loc)
                key = id_key(row_id)
                if key in seen:
                    raise RequestError(422, f"id '{row_id}' appears twice in this request (ids are compared "
                                            f"stripped and Unicode-normalised; first in row {seen[key]})", loc)
                seen[key] = i
            ids.append(row_id)
            if len(row["labels"]) > self.settings.max_labels_per_row:
                raise RequestError(413, f"{len(row['labels']):,} labels on one row; this server takes at most "
                                        f"{self.settings.max_labels_per_row}", ["body", "rows", i, "labels"])
            for j, label in enumerate(row["labels"]):
                if not label.strip():
                    raise RequestError(422, "empty label", ["body", "rows", i, "labels", j])
                if len(label) > MAX_LABEL_CHARS:
                    raise RequestError(422, f"label of {len(label):,} characters; at most {MAX_LABEL_CHARS}",
                                       ["body", "rows", i, "labels", j])
                new_labels.add(label.strip())
        with self.lock.write(), self._index_available():
            with LabelIndex.update(self.folder, self.encoder) as index:
                known = {id_key(r.id): r.id for r in index.rows}
                clash = next((i for i, row_id in enumerate(ids) if row_id is not None and id_key(row_id) in known),
                             None)
                if clash is not None:
                    clash_id = ids[clash]
                    assert clash_id is not None  # only rows with an id can clash
                    raise RequestError(409, f"id '{clash_id}' is already in the index"
                                            + ("" if known[id_key(clash_id)] == clash_id
                                               else f" (as '{known[id_key(clash_id)]}')"),
                                       ["body", "rows", clash, "id"])
                labels_after = len(set(index.label_names) | new_labels)
                if labels_after > max(self.settings.max_index_labels, len(index.label_names)):
                    raise RequestError(413, f"these rows would bring the index to {labels_after:,} distinct labels; "
                                            f"this server lets live examples grow it to at most "
                                            f"{self.settings.max_index_labels:,}", ["body", "rows"])
                fresh = _free_ids({r.id for r in index.rows} | {i for i in ids if i is not None},
                                  sum(1 for i in ids if i is None))
                made = [Row(text=r["text"], labels=tuple(dict.fromkeys(lab.strip() for lab in r["labels"])),
                            id=row_id if row_id is not None else next(fresh), line=i + 1)
                        for i, (r, row_id) in enumerate(zip(rows, ids, strict=True))]
                index.add(made, self.encoder, cache=self.cache, batch_size=self.settings.batch_size)
                _commit_or_cancel(ticket)
            self._adopt(index)
        return {"added": len(made), "ids": [r.id for r in made], "n_rows": len(index)}

    def delete_example(self, row_id: str, ticket=None) -> dict:
        from fewlabel.indexing.store.label_index import LabelIndex

        wanted = row_id.strip()
        with self.lock.write(), self._index_available():
            with LabelIndex.update(self.folder, self.encoder) as index:
                match = next((r.id for r in index.rows if r.id == wanted), None) or \
                    next((r.id for r in index.rows if id_key(r.id) == id_key(wanted)), None)
                if match is None:
                    raise RequestError(404, f"no example with id '{wanted}' in the index", ["path", "id"])
                if len(index) == 1:
                    raise RequestError(409, "cannot remove the last example of the index", ["path", "id"])
                index.remove([match])
                _commit_or_cancel(ticket)
            self._adopt(index)
        return {"deleted": match, "n_rows": len(index)}

    def _adopt(self, index) -> None:
        """Serve the index just saved, without reading it back."""
        self.index = index
        self._predictors.clear()
        self._stamp_seen = _stamp(self.folder)


def _free_ids(taken: set[str], n: int) -> Iterator[str]:
    """The next ``n`` numbers after the largest numeric id in use, as `fewlabel index add` numbers new rows."""
    start = 1 + max((int(t) for t in taken if t.isdigit()), default=-1)
    return iter([str(start + i) for i in range(n)])


MAX_ID_CHARS = 256
MAX_LABEL_CHARS = 256


def id_key(row_id: str) -> str:
    """How ids are compared: stripped (as they are stored) and Unicode NFC-normalised, so ``dup1`` and `` dup1``,
    or an ``é`` typed as one code point and as two, are one id, and one DELETE removes exactly one row."""
    import unicodedata

    return unicodedata.normalize("NFC", row_id.strip())


def _commit_or_cancel(ticket) -> None:
    """The last step before a write saves: refused (nothing saved) when the guard's timeout came first."""
    if ticket is not None and not ticket.commit():
        raise RequestError(504, "the request timed out before it was saved; nothing was saved")


def scrub_paths(message: str, settings: ServeSettings) -> str:
    """``message`` without the server's own folders (the index folder, its parent, the user's home): a client
    never learns where the server keeps its files."""
    folder = Path(settings.index_dir)
    for place, name in ((folder.resolve(), "<index>"), (folder, "<index>"), (folder.resolve().parent, "<server>"),
                        (folder.parent, "<server>"), (Path.home(), "<home>")):
        text = str(place)
        if len(text) > 1:
            message = message.replace(text, name)
    return message
