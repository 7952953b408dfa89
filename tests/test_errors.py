"""Errors a library user can catch the usual way: a bad argument is a ``ValueError`` (as scikit-learn's
``InvalidParameterError``), while the CLI still prints any fewlabel error as one line with exit 2."""

from __future__ import annotations

import numpy as np
import pytest

from fewlabel.indexing.errors import (
    DataError,
    FewlabelError,
    IndexMismatchError,
    InvalidArgumentError,
    SetupError,
)


def test_argument_errors_are_value_errors_and_setup_errors_are_not():
    for cls in (InvalidArgumentError, DataError, IndexMismatchError):
        assert issubclass(cls, ValueError) and issubclass(cls, FewlabelError)
    assert issubclass(SetupError, FewlabelError) and not issubclass(SetupError, ValueError)


def test_a_bad_argument_from_the_library_is_caught_as_value_error():
    from fewlabel.retrieval.knn.estimator import KNNLabeler
    from fewlabel.retrieval.methods.auto import select_method
    from fewlabel.retrieval.methods.common import Views

    views = Views(np.eye(6, dtype=np.float32), [f"t{i}" for i in range(6)])
    with pytest.raises(ValueError, match="metric must be 'micro' or 'macro'"):
        select_method(views, np.eye(2, dtype=bool)[[0, 1] * 3], multi_label=False, metric="weighted")
    with pytest.raises(ValueError, match="k"):
        KNNLabeler(k=0).fit(np.eye(4, dtype=np.float32), ["a", "b", "a", "b"])


def test_the_cli_still_maps_an_argument_error_to_one_line_and_exit_2(tmp_path, capsys):
    from fewlabel.retrieval.cli import main

    data = tmp_path / "train.csv"
    data.write_text("text,label\n" + "".join(f"row {i},{'ab'[i % 2]}\n" for i in range(8)), encoding="utf-8")
    code = main(["index", "build", str(data), "--method", "setfit", "--out", str(tmp_path / "ix")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--budget" in err
    assert not (tmp_path / "ix").exists()
