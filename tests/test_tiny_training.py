"""Fast guards of behaviours whose real-model tests are slow (issue 29, item 3), on a tiny random BERT base
(tests/support/tiny_models.py): STS bi-encoder training gives a folder that loads as an encoder and scores
symmetrically, and a cross-encoder run resumes from its checkpoint and refuses another run's. They check the
plumbing only (folders, markers, checkpoints); test_sts.py's slow tests check the same on minilm."""

from __future__ import annotations

import json

import pytest

from fewlabel.finetune.settings import RunOptions, TrainSettings
from fewlabel.indexing.errors import FewlabelError
from fewlabel.indexing.sts.pairs import PairRow
from fewlabel.retrieval.sts.scorer import BI_ENCODER, CROSS_ENCODER, STSScorer, model_kind
from tests.support.tiny_models import tiny_bert
from tests.support.trained_index import check_round_trip_and_tamper

PAIRS = [("A plane is taking off.", "An air plane is taking off.", 5.0),
         ("A man is playing a large flute.", "A man is playing a flute.", 3.8),
         ("Three men are playing chess.", "Two men are playing chess.", 2.6),
         ("A man is smoking.", "A man is skating.", 0.5),
         ("The man is playing the piano.", "The man is playing the guitar.", 1.6),
         ("Some men are fighting.", "Two men are fighting.", 4.25),
         ("A woman is slicing an onion.", "A man is playing a guitar.", 0.0),
         ("A dog runs in the park.", "A dog is running in a park.", 4.8)]


def rows(items=PAIRS) -> list[PairRow]:
    return [PairRow(id=str(i), sentence1=a, sentence2=b, score=s, binary=int(s >= 3), line=i + 1)
            for i, (a, b, s) in enumerate(items)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("tiny") / "base")


def test_bi_encoder_training_on_a_tiny_base_loads_as_an_encoder(base, tmp_path):
    from fewlabel.finetune.sts.trainer import train_sts_bi_encoder
    from fewlabel.indexing.encoders.encoder import Encoder

    out = tmp_path / "bi"
    summary = train_sts_bi_encoder(rows()[:6], rows()[6:], str(base), out,
                                   TrainSettings(epochs=1, batch_size=4, max_length=16, max_steps=1),
                                   run=RunOptions(device="cpu", show_progress=False))
    assert summary["steps"] == 1 and summary["dev"]["pearson"] is not None
    assert (out / "fewlabel_model.json").is_file() and (out / "fewlabel_encoder.json").is_file()
    assert model_kind(out) == BI_ENCODER
    encoder = Encoder(str(out), device="cpu")
    assert encoder.dim == 16
    scores = STSScorer(str(out), device="cpu").predict([("A cat sits.", "A dog runs."), ("A dog runs.", "A cat sits.")])
    assert scores[0] == pytest.approx(scores[1]) and 0 <= scores[0] <= 5
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]  # the staging folder was swapped in


def test_cross_encoder_resumes_from_its_checkpoint_and_refuses_another_runs(base, tmp_path):
    from fewlabel.finetune.sts.trainer import train_sts_cross_encoder

    out = tmp_path / "ce"

    def steps(n: int) -> TrainSettings:
        return TrainSettings(epochs=2, batch_size=4, max_length=16, max_steps=n)

    first = train_sts_cross_encoder(rows()[:4], rows()[4:], str(base), out, steps(1), both_orders=False,
                                    run=RunOptions(device="cpu", show_progress=False, keep_checkpoints=True))
    assert first["steps"] == 1 and (out / "checkpoints" / "checkpoint-1").is_dir()
    marker = json.loads((out / "fewlabel_model.json").read_text())
    run = RunOptions(device="cpu", show_progress=False)
    with pytest.raises(FewlabelError, match="different run"):  # other data: its checkpoints are not resumed
        train_sts_cross_encoder(rows()[:3], rows()[4:], str(base), out, steps(2), both_orders=False, run=run)
    assert json.loads((out / "fewlabel_model.json").read_text()) == marker  # the refused run changed nothing
    second = train_sts_cross_encoder(rows()[:4], rows()[4:], str(base), out, steps(2), both_orders=False, run=run)
    assert second["resumed_from"].endswith("checkpoint-1") and second["steps"] == 2
    assert model_kind(out) == CROSS_ENCODER
    assert json.loads((out / "fewlabel_model.json").read_text())["steps"] == 2
    scorer = STSScorer(str(out), device="cpu")
    sim = scorer.similarity([("A cat sits.", "A dog runs.")])
    assert scorer.predict([("A cat sits.", "A dog runs.")]) == pytest.approx(scorer.scale * sim)
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_setfit_as_an_index_method_on_a_tiny_base_round_trips_and_refuses_a_tampered_weight(base, tmp_path):
    """The slow test_methods.py check of SetFit as an index method (stopped by the clock, the same predictions
    after save and load, safetensors only, a changed weight refused), with a tiny body instead of minilm."""
    from pathlib import Path

    from fewlabel.finetune.classify.index_heads import index_trainers
    from fewlabel.indexing.encoders.encoder import Encoder
    from fewlabel.indexing.readers import read_rows
    from fewlabel.retrieval.methods.index_method import build_index

    demo = Path(__file__).resolve().parents[1] / "retrieval" / "demo_data"

    def rows_of(name: str, n: int):
        return read_rows(demo / name, text_col="text", label_col="label", id_col="id", label_sep=None)[:n]

    encoder = Encoder(str(base), device="cpu")
    test = [r.text for r in rows_of("nsmc_test.tsv", 8)]
    index = build_index(rows_of("nsmc_train.tsv", 32), encoder, rows_of("nsmc_valid.tsv", 12), method="setfit",
                        max_k=5, budget_minutes=0.05,  # 3 s of training, 75 % of it for the one head
                        trainers=index_trainers(str(base), max_epochs=200, device="cpu"))
    assert index.method["name"] == "setfit" and index.method["settings"] == {}
    spec = check_round_trip_and_tamper(index, encoder, test, "setfit", tmp_path / "ix")
    assert 0 < spec["model"]["trained"]["trained_steps"] <= spec["model"]["trained"]["steps"]  # within its budget
