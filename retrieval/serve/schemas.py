"""Request and response models of `fewlabel serve`. Pydantic checks every request before any work, so a wrong type
or a missing or unknown field is a 422 whose ``loc`` names it (``["body", "texts", 2]``); the limits that depend
on the server's settings (batch size, text length) are checked by the service with the same shape of answer."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = ["ClassifyRequest", "ClassifyResponse", "DeleteResponse", "EmbedRequest", "EmbedResponse",
           "ExamplesRequest", "ExamplesResponse", "HealthResponse", "InfoResponse", "SimilarityRequest",
           "SimilarityResponse", "ZeroShotRequest", "ZeroShotResponse"]


def _valid_unicode(value: str) -> str:
    """JSON may spell a lone surrogate (``"\\ud800"``), which is no character: the tokenizer and the index files
    cannot encode it, so it is refused here, as a 422 naming the field, instead of failing later as a 500."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode (a lone surrogate at character {exc.start})") from None
    return value


Text = Annotated[str, AfterValidator(_valid_unicode)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field ("text" for "texts") is refused, not ignored


class ClassifyRequest(_Request):
    texts: list[Text] = Field(min_length=1, description="texts to label")
    k: int | None = Field(default=None, ge=1, description="neighbours to vote (default: the index's tuned k)")
    explain: bool = Field(default=False, description="also return each text's neighbours")
    fallback: Literal["none", "nli", "embed"] = Field(
        default="none", description="zero-shot fallback, as `fewlabel predict --fallback` (nli needs --nli-model)")


class Neighbour(BaseModel):
    id: str
    text: str
    similarity: float
    labels: list[str]


class Classified(BaseModel):
    labels: list[str]
    scores: dict[str, float]
    route: str
    reason: str
    top_similarity: float | None
    neighbours: list[Neighbour] | None = None


class ClassifyResponse(BaseModel):
    predictions: list[Classified]


class SimilarityRequest(_Request):
    pairs: list[tuple[Text, Text]] = Field(min_length=1, description="sentence pairs [a, b]")


class SimilarityResponse(BaseModel):
    scores: list[float] = Field(description="0-5, one per pair")


class EmbedRequest(_Request):
    texts: list[Text] = Field(min_length=1)


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]
    model: str
    dim: int


class ZeroShotRequest(_Request):
    texts: list[Text] = Field(min_length=1)
    labels: list[Text] = Field(min_length=1, description="candidate labels (name=alias|alias allowed)")
    multi_label: bool = False


class ZeroShotItem(BaseModel):
    labels: list[str]
    scores: dict[str, float]
    route: str


class ZeroShotResponse(BaseModel):
    predictions: list[ZeroShotItem]


class ExampleRow(_Request):
    id: Text | None = Field(default=None, description="row id (default: the next free number)")
    text: Text
    labels: list[Text] = Field(min_length=1)


class ExamplesRequest(_Request):
    rows: list[ExampleRow] = Field(min_length=1)


class ExamplesResponse(BaseModel):
    added: int
    ids: list[str]
    n_rows: int


class DeleteResponse(BaseModel):
    deleted: str
    n_rows: int


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class InfoResponse(BaseModel):
    model: str
    labels: list[str]
    method: str
    n_rows: int
    multi_label: bool
    k: int
    m: int | float  # a whole number of votes is an int (the tuned m always is); --m 2.5 stays a float
    store: dict
    version: str
    sts_model: str
    zero_shot: list[str]
    limits: dict
    serving: dict | None = None  # backend, threads, batching and worker settings (see retrieval/serve/speed.py)
