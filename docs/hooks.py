"""MkDocs hooks: pages whose content has one source elsewhere.

- ``cli.md``: ``<!-- cli-reference -->`` becomes the ``--help`` of every command, walked from the real parser
  (:func:`fewlabel.retrieval.cli.build_parser`), so the reference cannot drift from the code.
- ``results.md``: ``<!-- results-index -->`` becomes a table of every ``benchmarks/results/*.json`` report (title,
  date, machine, command), read at build time."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _walk(parser: argparse.ArgumentParser, path: list[str]):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, child in action.choices.items():
                if id(child) not in seen:
                    seen.add(id(child))
                    yield from _walk(child, [*path, name])


def cli_reference() -> str:
    from fewlabel.retrieval.cli import build_parser

    os.environ["COLUMNS"] = "110"  # argparse wraps help at the terminal width: a fixed one for the page
    blocks = []
    for path, parser in _walk(build_parser(), ["fewlabel"]):
        title = " ".join(path)
        blocks.append(f"## `{title}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
    return "\n".join(blocks)


def results_index() -> str:
    rows = ["| report | what | date | machine | command |", "|---|---|---|---|---|"]
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        report = json.loads(path.read_text(encoding="utf-8"))

        def cell(key: str, report: dict = report) -> str:
            value = report.get(key, "")
            value = value if isinstance(value, str) else json.dumps(value)
            return value.replace("|", "\\|").replace("\n", " ")

        rows.append(f"| `{path.stem}` | {cell('title')} | {cell('date')} | {cell('machine')} | `{cell('command')}` |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "<!-- cli-reference -->" in markdown:
        markdown = markdown.replace("<!-- cli-reference -->", cli_reference())
    if "<!-- results-index -->" in markdown:
        markdown = markdown.replace("<!-- results-index -->", results_index())
    return markdown
