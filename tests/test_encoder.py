"""Encoder behaviour on the real bundled MiniLM: pooling by hand, padding ignored, order kept,
and clear errors for models that cannot be loaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fewlabel.indexing.encoders.encoder import Encoder
from fewlabel.indexing.errors import ModelError

SHORT = "a cat"
LONG = "the quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill"


def test_mean_pooling_matches_hand_computation(minilm):
    """The default backend's vectors (onnx on the CPU) against pooling by hand over torch's token vectors."""
    reference = Encoder("minilm", device="cpu", backend="torch")
    batch = reference.tokenizer([SHORT], return_tensors="pt")
    with torch.inference_mode():
        hidden = reference.model(**batch).last_hidden_state[0]
    n_tokens = int(batch["attention_mask"].sum())
    by_hand = hidden[:n_tokens].sum(dim=0) / n_tokens
    ours = minilm.encode([SHORT], normalize=False)[0]
    np.testing.assert_allclose(ours, by_hand.numpy(), atol=1e-5)


def test_padding_never_counted_and_order_restored(minilm):
    alone = minilm.encode([SHORT], normalize=False)[0]
    together = minilm.encode([SHORT, LONG, "x"], batch_size=3, normalize=False)
    np.testing.assert_allclose(together[0], alone, atol=1e-5)
    np.testing.assert_allclose(together[1], minilm.encode([LONG], normalize=False)[0], atol=1e-5)


def test_normalised_rows_and_agreement_with_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    texts = [SHORT, LONG, "Korean: 안녕하세요"]
    ours = minilm.encode(texts)
    assert ours.dtype == np.float32 and ours.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    theirs = SentenceTransformer(minilm.location, device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_max_length_truncates(minilm):
    short_encoder = Encoder(minilm.location, max_length=4, device="cpu")
    cut = short_encoder.encode([LONG])[0]
    assert not np.allclose(cut, minilm.encode([LONG])[0], atol=1e-3)
    first_words = minilm.tokenizer.convert_tokens_to_string(minilm.tokenizer.tokenize(LONG)[:2])
    np.testing.assert_allclose(cut, minilm.encode([first_words])[0], atol=1e-5)


def test_empty_input_gives_empty_array(minilm):
    assert minilm.encode([]).shape == (0, 384)


def test_describe_records_what_an_index_needs(e5):
    meta = e5.describe()
    assert meta["model"] == "e5-small" and meta["prefix"] == "query: " and meta["pooling"] == "mean"
    assert meta["dim"] == 384 and meta["max_length"] == 512


@pytest.mark.parametrize("name, message", [
    ("./no/such/folder", "does not exist"),
    ("sentence-transformers/not-on-this-machine", "Hugging Face id"),
])
def test_unloadable_models_fail_clearly(name, message):
    with pytest.raises(ModelError, match=message):
        Encoder(name, device="cpu")


def test_folder_without_model_fails_clearly(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelError, match="no config.json"):
        Encoder(str(tmp_path), device="cpu")
