"""Cut the small samples that `fewlabel demo` ships with, from ../shared/data (run once; the output is
committed under retrieval/demo_data/ with its licences).

    python scripts/make_demo_data.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"
SIZES = {"train": 800, "valid": 300, "test": 300}
NSMC_SIZES = {"train": 500, "valid": 200, "test": 200}


def goemotions(data: Path, seed: int = 0) -> None:
    folder = data / "goemotions" / "ekman"
    names = (folder / "labels.txt").read_text().split()
    splits = {"train": "train.tsv", "valid": "dev.tsv", "test": "test.tsv"}
    for split, file in splits.items():
        df = pd.read_csv(folder / file, sep="\t", header=None, names=["text", "ids", "id"], quoting=3,
                         dtype=str)
        df = df.sample(n=SIZES[split], random_state=seed)
        df["labels"] = df["ids"].map(lambda s: ",".join(names[int(i)] for i in s.split(",")))
        df[["id", "text", "labels"]].to_csv(OUT / f"goemotions_ekman_{split}.tsv", sep="\t", index=False,
                                             quoting=3)


def nsmc(data: Path, seed: int = 0) -> None:
    folder = data / "nsmc"
    train = pd.read_csv(folder / "rebuilt_ratings_train.txt", sep="\t", quoting=3, dtype=str)
    test = pd.read_csv(folder / "rebuilt_ratings_test.txt", sep="\t", quoting=3, dtype=str)
    pool = train.sample(n=NSMC_SIZES["train"] + NSMC_SIZES["valid"], random_state=seed)
    parts = {"train": pool.iloc[:NSMC_SIZES["train"]], "valid": pool.iloc[NSMC_SIZES["train"]:],
             "test": test.sample(n=NSMC_SIZES["test"], random_state=seed)}
    for split, df in parts.items():
        df = df.assign(label=df["label"].map({"0": "negative", "1": "positive"}))
        df.rename(columns={"document": "text"})[["id", "text", "label"]].to_csv(
            OUT / f"nsmc_{split}.tsv", sep="\t", index=False, quoting=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = parser.parse_args()
    data = Path(args.data)
    OUT.mkdir(parents=True, exist_ok=True)
    goemotions(data)
    nsmc(data)
    lic = data / "_licenses"
    shutil.copy(lic / "GoEmotions-pytorch_monologg_LICENSE_Apache-2.0.txt", OUT / "LICENSE-GoEmotions-Apache-2.0.txt")
    shutil.copy(lic / "NSMC_e9t_license_statement_CC0.txt", OUT / "LICENSE-NSMC-CC0.txt")


if __name__ == "__main__":
    main()
