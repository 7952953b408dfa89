"""`fewlabel serve INDEX_DIR`: the index as an HTTP service (FastAPI app in `fewlabel.retrieval.serve`, run by
uvicorn). Everything a user can get wrong (the index, the port, the extra not installed, Milvus Lite with several
workers) is refused here, as one line with exit 2, before uvicorn starts."""

from __future__ import annotations

import argparse
import os
import socket

from fewlabel.indexing.errors import InvalidArgumentError, SetupError
from fewlabel.retrieval.cli.options import (
    add_faiss_device_option,
    add_model_options,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    say,
)

TOKEN_ENV = "FEWLABEL_TOKEN"
DEFAULT_DRAIN_S = 20.0  # as fewlabel.retrieval.serve.shutdown.DEFAULT_DRAIN_S (not imported: keeps --help light)


def add_serve_command(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve", help="serve an index over HTTP (classify, similarity, embed, zero-shot, live examples)",
        description="Serve an index as a JSON API (FastAPI + uvicorn): GET /health, /info; POST /classify, "
                    "/similarity, /embed, /zeroshot, /examples, /suggest, /check; DELETE /examples/ID. A labelling "
                    "page at /ui (with --pool). OpenAPI docs at /docs. "
                    "Needs the serve extra: pip install 'fewlabel[serve]'.")
    serve.add_argument("index_dir", help="index folder")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    serve.add_argument("--workers", type=positive_int, default=1,
                       help="worker processes, each with its own copy of the models and cores/N compute threads "
                            "(default: 1; on a CPU more rarely helps: see docs/serving-speed.md)")
    serve.add_argument("--sts-model", default=None,
                       help="model for /similarity: an encoder or an STS cross-encoder folder (default: the "
                            "index's encoder, cosine mapped to 0-5)")
    serve.add_argument("--nli-model", default=None,
                       help="NLI checkpoint for /zeroshot and fallback=nli (default: /zeroshot uses embeddings)")
    serve.add_argument("--token", default=None,
                       help=f"bearer token every route but /health requires (default: ${TOKEN_ENV}; none = open). "
                            "Prefer the environment or --token-file: a command line is visible to other users")
    serve.add_argument("--token-file", default=None, metavar="FILE",
                       help="read the bearer token from FILE (its first line)")
    serve.add_argument("--insecure", action="store_true",
                       help="allow serving on a non-loopback address without a token (anyone who can reach it "
                            "can add and delete examples)")
    serve.add_argument("--max-batch", type=positive_int, default=64,
                       help="most texts (pairs, rows) per request; more is a 413 (default: 64)")
    serve.add_argument("--max-text-length", type=positive_int, default=10_000,
                       help="most characters per text; longer is a 422 (default: 10000)")
    serve.add_argument("--timeout", type=positive_float, default=30.0,
                       help="seconds a request may take before a 504 (default: 30)")
    serve.add_argument("--max-batch-tokens", type=non_negative_int, default=8192,
                       help="dynamic batching: most padded tokens (texts x longest) the encoder takes in one batch "
                            "of concurrent requests; 0 encodes each request on its own (default: 8192)")
    serve.add_argument("--max-wait-ms", type=non_negative_float, default=5.0,
                       help="dynamic batching: longest wait for more requests to join a batch, once requests come "
                            "concurrently; a lone client's request is encoded at once (default: 5)")
    serve.add_argument("--encode-lanes", type=positive_int, default=1,
                       help="dynamic batching: batches encoded at once, each on cores/lanes threads; for many "
                            "cores and short texts (on 2 cores, 2 lanes measured slower: docs/serving-speed.md) "
                            "(default: 1)")
    serve.add_argument("--max-queue", type=positive_int, default=1024,
                       help="dynamic batching: most texts waiting to be encoded; a request past it gets a 503 with "
                            "Retry-After (default: 1024)")
    serve.add_argument("--drain-timeout", type=non_negative_float, default=DEFAULT_DRAIN_S,
                       help="on SIGTERM, seconds to let accepted requests finish before they are cancelled "
                            f"(default: {DEFAULT_DRAIN_S:g})")
    serve.add_argument("--pool", default=None,
                       help="unlabelled texts (CSV, TSV, JSONL) that /suggest and the labelling page at /ui pick from")
    serve.add_argument("--pool-text-col", default="text", help="text column of --pool (default: text)")
    serve.add_argument("--pool-id-col", default=None, help="id column of --pool (default: row number)")
    add_model_options(serve)
    add_faiss_device_option(serve)
    serve.set_defaults(handler=cmd_serve)


def _check_port(host: str, port: int) -> int:
    """Bind once to find out now, as one line, that the port is taken (uvicorn would log a traceback)."""
    if not 0 <= port <= 65535:
        raise InvalidArgumentError(f"--port {port}: a port is 0-65535")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SetupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        return probe.getsockname()[1]


def resolve_token(args: argparse.Namespace) -> str | None:
    """The bearer token from --token, --token-file or $FEWLABEL_TOKEN (at most one), or None for an open server.
    A token that is given but empty, or one a client could never send back byte for byte (spaces, control or
    non-ASCII characters: HTTP headers are not UTF-8), is refused: it would silently turn auth off or lock
    everyone out."""
    given = [(name, value) for name, value in (("--token", args.token), ("--token-file", args.token_file),
                                               (f"${TOKEN_ENV}", os.environ.get(TOKEN_ENV)))
             if value is not None]
    explicit = [name for name, _ in given if name != f"${TOKEN_ENV}"]
    if len(explicit) > 1:
        raise InvalidArgumentError("give the token once: --token or --token-file, not both")
    if not given:
        return None
    name, value = given[0]
    if name == "--token-file":
        try:
            with open(value, encoding="utf-8") as fh:
                value = fh.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidArgumentError(f"--token-file {value}: cannot read it "
                                f"({getattr(exc, 'strerror', None) or type(exc).__name__})") from exc
    if not value.strip():
        raise InvalidArgumentError(f"{name}: the token is empty; give a real token, or none to serve without auth")
    if not (value.isascii() and value.isprintable()) or value != value.strip() or " " in value:
        raise InvalidArgumentError(f"{name}: a token must be printable ASCII without spaces (a client sends it in an "
                            "HTTP header, byte for byte)")
    return value


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _pool(args: argparse.Namespace) -> str | None:
    """--pool read once now, so a bad file or column is one line before the server starts."""
    if args.pool is None:
        return None
    from fewlabel.indexing.readers import read_texts

    read_texts(args.pool, text_col=args.pool_text_col, id_col=args.pool_id_col)
    return os.path.abspath(args.pool)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from fewlabel.retrieval.serve.app import create_app
        from fewlabel.retrieval.serve.service import ENV_SETTINGS, ServeSettings
    except ImportError as exc:
        raise SetupError(f"fewlabel serve needs the serve extra ({exc.name} is missing): "
                            "pip install 'fewlabel[serve]'") from exc
    from fewlabel.indexing.store.faiss_factory import resolve_faiss_device
    from fewlabel.indexing.store.label_index import LabelIndex

    resolve_faiss_device(args.faiss_device)  # cuda without a GPU: one line now
    index = LabelIndex.load(args.index_dir, mmap=True)  # a bad folder is one line now, not a failed worker later
    index.use_faiss_device("cpu" if args.faiss_device == "auto" else args.faiss_device)  # cuda: HNSW refused now
    store = index.store.describe()
    if args.workers > 1 and store["kind"] == "milvus" and "://" not in store["uri"]:
        raise InvalidArgumentError(
            "--workers > 1 with a Milvus Lite index: Milvus Lite lets one process open its file; "
                            "serve with one worker, or keep the index on a Milvus server")
    token = resolve_token(args)
    loopback = _is_loopback(args.host)
    if not token and not loopback and not args.insecure:
        raise InvalidArgumentError(f"--host {args.host} without a token: anyone who can reach it could add and delete "
                            f"examples; set ${TOKEN_ENV} or give --token-file (or --insecure to serve it open)")
    port = _check_port(args.host, args.port)
    if args.token is not None and not loopback:
        say(args, f"warning: --token on the command line is visible to other users of this machine (ps); prefer "
                  f"${TOKEN_ENV} or --token-file")
    if not token and not loopback:
        say(args, f"warning: serving on {args.host} without a token (--insecure): anyone who can reach it can add "
                  "and delete examples")
    settings = ServeSettings(index_dir=os.path.abspath(args.index_dir), token=token, sts_model=args.sts_model,
                             nli_model=args.nli_model, device=args.device, backend=args.backend,
                             faiss_device=args.faiss_device,
                             batch_size=args.batch_size,
                             cache=not args.no_cache, max_batch=args.max_batch, max_text_chars=args.max_text_length,
                             timeout_s=args.timeout, max_batch_tokens=args.max_batch_tokens,
                             max_wait_ms=args.max_wait_ms, encode_lanes=args.encode_lanes,
                             max_queue=args.max_queue, workers=args.workers,
                             drain_s=args.drain_timeout, pool=_pool(args), pool_text_col=args.pool_text_col,
                             pool_id_col=args.pool_id_col)
    say(args, f"serving {args.index_dir} ({len(index)} rows, {store['kind']} store) on http://{args.host}:{port} "
              f"with {args.workers} worker(s); API docs at /docs")
    log_level = "warning" if args.quiet else "info"
    if args.workers == 1:
        uvicorn.run(create_app(settings), host=args.host, port=port, log_level=log_level, access_log=not args.quiet,
                    timeout_graceful_shutdown=args.drain_timeout)
    else:
        os.environ[ENV_SETTINGS] = settings.to_env()
        uvicorn.run("fewlabel.retrieval.serve.app:app_from_env", factory=True, host=args.host, port=port,
                    workers=args.workers, log_level=log_level, access_log=not args.quiet,
                    timeout_graceful_shutdown=args.drain_timeout)
    return 0
