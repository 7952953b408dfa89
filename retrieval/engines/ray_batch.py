"""`fewlabel predict … --engine ray`: the same labelling as the local engine, spread over Ray Data actors.

Ray Data reads the input (CSV, TSV, JSON Lines, Parquet) in parallel; ``map_batches`` sends batches to a pool of
actors, each of which loads the index and its encoder once and labels with the same router as `fewlabel predict`
(`fewlabel.retrieval.router.Predictor`); the driver takes the results back *in input order* (Ray Data's
``preserve_order``), numbers the rows when the input has no id column (as the local reader does: 0, 1, …), and
writes them with the same writer. So the output is the local engine's, file for file.

Sizing: each actor asks Ray for a fraction of a CPU such that one CPU stays free for reading. An actor pool that
takes every CPU leaves the read tasks unscheduled, and the job hangs (seen with 2 actors on 2 cores); with
``num_cpus=0.5`` each it runs. Locally, Ray starts on this machine; with ``--ray-address`` the same command runs on
a cluster whose nodes have fewlabel installed and see the index folder and the input at the same paths (a shared
file system, or an object-store URL for the input).

Limits: the driver holds every prediction before writing the one output file (about 1 KB a row with 7 labels);
for hundreds of millions of rows, split the input. A Milvus Lite index cannot be used: Milvus Lite lets one
process open its file, and every actor opens the index."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fewlabel.indexing.errors import DataError, FewlabelError, InvalidArgumentError, SetupError, first_line
from fewlabel.retrieval.outputs import Prediction

__all__ = ["INPUT_FORMATS", "actor_cpus", "check_index_for_ray", "predict_on_ray"]

INPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".tab": "tsv", ".jsonl": "json", ".ndjson": "json",
                 ".json": "json", ".parquet": "parquet"}
ROWS_PER_BATCH = 256  # texts an actor labels per call: big enough for the encoder, small enough to spread


class _Labeller:
    """One Ray actor: the index and its encoder, loaded once, labelling batches with the local engine's router."""

    def __init__(self, index_dir: str, settings: dict) -> None:
        import torch

        from fewlabel.indexing.store.label_index import LabelIndex
        from fewlabel.retrieval.router import Predictor

        torch.set_num_threads(max(1, int(settings["cpus"])))
        self.settings = settings
        index = LabelIndex.load(index_dir)
        encoder = index.load_encoder(settings["device"])
        self.predictor = Predictor(index, encoder, None, k=settings["k"], m=settings["m"],
                                   batch_size=settings["batch_size"])

    def __call__(self, batch):
        import pandas as pd

        from fewlabel.indexing.encoders.cache import EmbeddingCache, default_cache_path
        from fewlabel.indexing.readers import Row

        if self.settings["cache"] and self.predictor.cache is None:  # opened here: Ray calls from another thread
            self.predictor.cache = EmbeddingCache(default_cache_path())

        text_col, id_col = self.settings["text_col"], self.settings["id_col"]
        rows = []
        for i, text in enumerate(batch[text_col].tolist()):
            row_id = "" if id_col is None else batch[id_col].iloc[i]
            where = {"path": self.settings["input"], "field": text_col}
            if id_col is not None:
                if row_id is None or not str(row_id).strip():
                    raise DataError("empty id", path=self.settings["input"], field=id_col)
                row_id = str(row_id).strip()
                where["field"] = f"{text_col}' of id '{row_id}"
            if not isinstance(text, str):
                raise DataError(f"text must be a string, found {'null' if text is None else type(text).__name__}",
                                **where)
            if not text.strip():
                raise DataError("empty text", **where)
            rows.append(Row(text=text, labels=(), id=str(row_id), line=0))
        predictions = self.predictor.predict(rows, explain=self.settings["explain"])
        return pd.DataFrame({"prediction": [json.dumps(asdict(p), ensure_ascii=False) for p in predictions]})


def _column_name(column: str, header: bool) -> str:
    """Without a header, columns are positions (``--text-col 0``); Arrow names them f0, f1, …"""
    if header:
        return column
    if not column.strip().isdigit():
        raise InvalidArgumentError(f"with --no-header, columns are 0-based positions such as 0 or 1, not '{column}'")
    return f"f{int(column)}"


def _read(path: str, text_col: str, id_col: str | None, header: bool):
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import ray.data

    suffix = Path(path).suffix.lower()
    fmt = INPUT_FORMATS.get(suffix)
    if fmt is None:
        raise DataError(f"--engine ray reads {', '.join(INPUT_FORMATS)}, not '{suffix or '(none)'}'", path=path)
    if "://" not in path and not Path(path).is_file():
        raise DataError("file not found", path=path)
    columns = [c for c in (text_col, id_col) if c is not None]
    if fmt in ("csv", "tsv"):
        names = [_column_name(c, header) for c in columns]
        parse = pacsv.ParseOptions(delimiter="\t", quote_char=False) if fmt == "tsv" else \
            pacsv.ParseOptions(newlines_in_values=True)
        return ray.data.read_csv(path, read_options=pacsv.ReadOptions(autogenerate_column_names=not header),
                                 parse_options=parse, file_extensions=None,
                                 convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                                      include_columns=names)), names
    if not header:
        raise InvalidArgumentError(f"--no-header applies to CSV and TSV files, not {suffix}")
    if fmt == "json":
        return ray.data.read_json(path, file_extensions=None).select_columns(columns), columns
    return ray.data.read_parquet(path, columns=columns, file_extensions=None), columns


def _ray_error(exc: BaseException) -> FewlabelError:
    """The user's mistake inside an actor (an empty text, a missing column) as one line, not Ray's traceback. Ray
    keeps the actor's exception only as text, so its root line is read from there."""
    seen = exc
    for _ in range(8):
        cause = getattr(seen, "cause", None) or seen.__cause__
        if cause is None or cause is seen:
            break
        seen = cause
        if isinstance(seen, FewlabelError):
            return FewlabelError(str(seen))
    root = re.search(r"^([\w.]+(?:Error|Exception)): (.+)$", str(exc), re.MULTILINE)
    if root and root.group(1).startswith("fewlabel."):
        return FewlabelError(root.group(2))
    message = f"{root.group(1).rpartition('.')[2]}: {root.group(2)}" if root else first_line(seen)
    if "No match for FieldRef" in message or "include_columns" in message or "not in schema" in message:
        return FewlabelError(f"a column given with --text-col/--id-col is not in the input ({message})")
    return FewlabelError(f"Ray: {message}")


def _start(address: str | None, quiet: bool) -> tuple[float, bool]:
    """Connect to a cluster, or start Ray on this machine; returns the CPUs Ray can use and whether we started it."""
    import logging

    import ray

    if ray.is_initialized():
        return float(ray.cluster_resources().get("CPU", 1)), False
    verbose = os.environ.get("FEWLABEL_RAY_LOGS") == "1"
    logging.getLogger("ray").setLevel(logging.INFO if verbose and not quiet else logging.WARNING)
    # the workers' logs (tracebacks of a failed batch included) stay out of the user's stderr: the error that
    # matters comes back as one line; FEWLABEL_RAY_LOGS=1 shows them
    common: dict[str, Any] = dict(include_dashboard=False, log_to_driver=verbose and not quiet,
                                  logging_level=logging.WARNING)
    try:
        if address:
            ray.init(address=address, **common)
        else:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local run needs no token (and says so otherwise)
            ray.init(num_cpus=os.cpu_count() or 1, **common)
    except Exception as exc:  # noqa: BLE001 - a cluster that cannot be reached: one line
        raise SetupError(f"cannot start Ray{f' at {address}' if address else ''}: {first_line(exc)}") from exc
    return float(ray.cluster_resources().get("CPU", 1)), True


def check_input_for_ray(path: str, *, text_col: str, id_col: str | None, header: bool) -> None:
    """Read a text input (CSV, TSV, JSONL) once with the local engine's own reader before Ray starts: the same
    checks and the same one-line errors (encoding, NUL bytes, missing columns, empty texts, duplicate ids), and
    no Ray traceback. Streams the file (only the ids seen are kept). Parquet, which the local reader does not
    read, is checked by Ray's reader and the actors."""
    from fewlabel.indexing.readers import iter_rows

    if Path(path).suffix.lower() == ".parquet":
        return
    for _ in iter_rows(path, text_col=text_col, id_col=id_col, header=header):
        pass


def actor_cpus(total_cpus: float, workers: int) -> float:
    """CPUs per actor: share all but one CPU (left for reading) among the actors, at most one each and at least a
    quarter."""
    return round(max(0.25, min(1.0, (total_cpus - 1) / workers)), 2)


def check_index_for_ray(index_dir: str) -> None:
    """Refuse a Milvus Lite index before Ray starts (every actor would open the file; only one process may)."""
    try:
        meta = json.loads((Path(index_dir) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # the actors' LabelIndex.load gives the real message
    store = meta.get("store") if isinstance(meta, dict) else None
    if isinstance(store, dict) and store.get("kind") == "milvus" and "://" not in str(store.get("uri", "")):
        raise InvalidArgumentError("--engine ray cannot use a Milvus Lite index: Milvus Lite lets one process open its "
                            "file and every Ray actor opens the index; keep the index on a Milvus server, or use "
                            "--engine local")


def predict_on_ray(index_dir: str, input_path: str, *, text_col: str, id_col: str | None = None,
                   header: bool = True, k: int | None = None, m: float | None = None, explain: bool = False,
                   batch_size: int = 32, device: str | None = None, cache: bool = True, num_workers: int = 1,
                   address: str | None = None, quiet: bool = False) -> Iterator[Prediction]:
    """Label every row of ``input_path`` on Ray; yields :class:`Prediction` objects in input order."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise SetupError("--engine ray needs the ray extra: pip install 'fewlabel[ray]'") from exc
    check_index_for_ray(index_dir)
    total, started = _start(address, quiet)
    # On the Ray we started here, an actor is not restarted (there is no other node to restart it on): Ray Data
    # keeps the actors' arguments in the object store, and with restarts on, Ray's core_worker prints an error
    # line about it on every run (ray-project/ray#53727). On a cluster, Ray's default restarts stay.
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # results come back in input order
        context.enable_progress_bars = not quiet
        cpus = actor_cpus(total, num_workers)
        settings = dict(text_col=None, id_col=None, k=k, m=m, explain=explain, batch_size=batch_size,
                        device=device, cache=cache, cpus=cpus, input=input_path)  # travels to the actors
        try:
            dataset, names = _read(input_path, text_col, id_col, header)
            settings.update(text_col=names[0], id_col=names[1] if id_col is not None else None)
            with warnings.catch_warnings():  # max_restarts has no named parameter yet: Ray warns on any remote arg
                warnings.simplefilter("ignore", DeprecationWarning)
                labelled = dataset.map_batches(_Labeller, fn_constructor_args=(str(Path(index_dir).resolve()),
                                                                               dict(settings)),
                                               compute=ray.data.ActorPoolStrategy(size=num_workers), num_cpus=cpus,
                                               batch_size=ROWS_PER_BATCH, batch_format="pandas",
                                               **({"max_restarts": 0} if started else {}))
            number = 0
            for batch in labelled.iter_batches(batch_format="pandas", batch_size=None):
                for item in batch["prediction"].tolist():
                    record = json.loads(item)
                    record["labels"] = tuple(record["labels"])
                    if id_col is None:
                        record["id"] = str(number)
                    number += 1
                    yield Prediction(**record)
        except FewlabelError:
            raise
        except Exception as exc:  # noqa: BLE001 - Ray wraps what the actors raised
            raise _ray_error(exc) from exc
    finally:
        if started:
            ray.shutdown()
