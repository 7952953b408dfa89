"""Write predictions as CSV or JSONL, atomically: the file appears whole or not at all, and an
existing file is only replaced once the new one is complete."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from indexing.errors import FewlabelError
from indexing.paths import atomic_file

from .labelling import Prediction


def output_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".ndjson"}:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise FewlabelError(f"{path}: output must end in .csv or .jsonl")


def write_predictions(predictions: Sequence[Prediction], path: str | Path, label_names: Sequence[str]) -> Path:
    """Columns: id, labels (a JSON list), score:<label> for every label (vote fraction),
    top_similarity (cosine of the nearest neighbour), and neighbours (JSON) in explain mode."""
    path = Path(path)
    fmt = output_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    explain = any(p.neighbours for p in predictions)
    with atomic_file(path) as fh:
        if fmt == "jsonl":
            for p in predictions:
                item = {"id": p.id, "labels": list(p.labels), "scores": p.scores,
                        "top_similarity": round(p.top_similarity, 6)}
                if explain:
                    item["neighbours"] = p.neighbours
                fh.write(json.dumps(item, ensure_ascii=False) + "\n")
        else:
            header = ["id", "labels", *[f"score:{name}" for name in label_names], "top_similarity"]
            writer = csv.writer(fh)
            writer.writerow([*header, "neighbours"] if explain else header)
            for p in predictions:
                line = [p.id, json.dumps(list(p.labels), ensure_ascii=False),
                        *[f"{p.scores[name]:.4f}" for name in label_names], f"{p.top_similarity:.4f}"]
                if explain:
                    line.append(json.dumps(p.neighbours, ensure_ascii=False))
                writer.writerow(line)
    return path
