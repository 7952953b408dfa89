"""The README's examples, run as printed: every ```bash and ```python block of the Quickstart, on the bundled
GoEmotions sample with minilm. The blocks are read from README.md, so a README that drifts from the code fails
here (the ```sh set-up block, `make demo`/`make test`, is not run: it would rebuild .venv)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S | re.M)


def test_readme_has_runnable_examples():
    assert readme_blocks("bash") and readme_blocks("python")
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


@pytest.mark.slow  # builds and tunes two 800-row indexes: 13.7 min on the loaded shared 2 cores
def test_readme_examples_run_on_the_bundled_data(tmp_path):
    """Run from a folder holding a link to the clone's retrieval/ (so `retrieval/demo_data` resolves as written)
    with the venv's `fewlabel` first on PATH; the files the examples write appear where they say."""
    (tmp_path / "retrieval").symlink_to(ROOT / "retrieval")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for block in readme_blocks("bash"):
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=900)
        assert done.returncode == 0, f"{block}\n{done.stderr[-3000:]}"
    assert (tmp_path / "predictions.csv").read_text(encoding="utf-8").startswith("id,labels,")
    for block in readme_blocks("python"):
        done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"{block}\n{done.stderr[-3000:]}"
        assert done.stdout.strip(), block  # the example prints the first text's labels
