"""The pieces of `benchmarks/search_1m.py` whose mistakes would not show in its report: the real texts it counts,
the synthetic vectors it adds, and recall@10."""

from __future__ import annotations

import numpy as np

from fewlabel.benchmarks.search_1m import distinct_texts, recall_at_k, synthetic


def test_distinct_texts_are_every_set_once_in_a_fixed_order(shared_data):
    texts, counts = distinct_texts(shared_data)
    assert len(texts) == len(set(texts)) == sum(c["new_distinct"] for c in counts.values()) > 300_000
    assert set(counts) == {"nsmc", "goemotions", "korsts", "stsb_en", "kornli", "klue_nli", "semeval"}
    assert all(t == " ".join(t.split()) and t for t in texts[:5000])
    assert not any("<e1>" in t for t in texts)
    assert distinct_texts(shared_data)[0][:100] == texts[:100]


def test_synthetic_vectors_are_unit_mixtures_of_real_ones():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(50, 16)).astype(np.float32)
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    made = synthetic(real, 1000, noise=0.0)
    assert made.shape == (1000, 16) and made.dtype == np.float32
    assert np.allclose(np.linalg.norm(made, axis=1), 1, atol=1e-5)
    # without noise each one lies in the span of two real vectors: its best two real cosines explain it
    best = np.sort(made @ real.T, axis=1)[:, -1]
    assert (best > 0.5).mean() > 0.9 and not np.isin(made, real).all(axis=1).any()
    assert np.array_equal(synthetic(real, 10, 0.02), synthetic(real, 10, 0.02))


def test_recall_at_k_counts_shared_neighbours():
    truth = np.arange(20).reshape(2, 10)
    found = truth.copy()
    found[1, :5] = 99
    assert recall_at_k(found, truth) == 0.75
