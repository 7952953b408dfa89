"""Turn a :class:`~fewlabel.indexing.relation.data.RelationRow` into the text a model reads. Three renderings:

- ``baseline``: the KLUE competition baseline, a pair ``("subject[SEP]object", sentence)``; ``[SEP]`` is
  replaced by the tokenizer's own separator when training (``</s>`` for e5-small);
- ``entity``: entity markers, ``[E1] subject [/E1]`` and ``[E2] object [/E2]`` around the mentions in the
  sentence (Baldini Soares et al., 2019); the trainer adds the four markers to the tokenizer as new tokens;
- ``typed``: typed entity markers with punctuation, ``@ * 사람 * 조지 해리슨 @`` and ``# ^ 단체 ^ 비틀즈 #``
  (Zhou and Chen, 2021), which the KLUE-RE teams' reports found best. The type word is in the sentence's
  language: Korean when the sentence holds Hangul, English otherwise (``type_language`` overrides it). A row
  with no entity type (SemEval) gets the untyped punctuation markers ``@ subject @`` and ``# object #``.

For the marker renderings the model reads a pair too: the marked sentence first, then the two marked
entities alone (``@ * 사람 * 조지 해리슨 @ # ^ 단체 ^ 비틀즈 #``). That second segment keeps both entities in
view when a long sentence is truncated, and gives the classifier's first token the pair to look at.

Every rendering records where the entity words landed in its sentence text (``subject_span``,
``object_span``, end exclusive) and where each opening marker starts, so callers and tests can check that
markers sit around exactly the right characters; positions are characters, so Hangul counts one per syllable.
"""

from __future__ import annotations

from dataclasses import dataclass

from fewlabel.indexing.errors import InvalidArgumentError
from fewlabel.indexing.relation.data import Entity, RelationRow
from fewlabel.indexing.text import has_hangul

__all__ = ["ENTITY_MARKERS", "MARKERS", "TYPE_WORDS", "Rendered", "render", "type_word"]

MARKERS = ("baseline", "entity", "typed")
DEFAULT_MARKER = "typed"
ENTITY_MARKERS = ("[E1]", "[/E1]", "[E2]", "[/E2]")
#: KLUE-RE entity types (person, organisation, location, date, other noun, quantity) in Korean and English.
TYPE_WORDS = {
    "ko": {"PER": "사람", "ORG": "단체", "LOC": "장소", "DAT": "날짜", "POH": "기타", "NOH": "수량"},
    "en": {"PER": "person", "ORG": "organization", "LOC": "location", "DAT": "date", "POH": "other",
           "NOH": "number"},
}
TYPE_LANGUAGES = ("auto", "ko", "en", "code")


@dataclass(frozen=True)
class Rendered:
    """What a model reads for one row. ``text`` is the (marked) sentence and ``query`` the other segment;
    :meth:`pair` gives them in the order the model reads them. Spans are positions in ``text``."""

    text: str
    query: str
    marker: str
    subject_span: tuple[int, int]  # text[start:stop] == subject word
    object_span: tuple[int, int]
    subject_marker: int | None  # where the subject's opening marker starts in text (None for baseline)
    object_marker: int | None

    def pair(self) -> tuple[str, str]:
        """(first, second) segment: the baseline puts the entities first, the marker renderings the sentence."""
        return (self.query, self.text) if self.marker == "baseline" else (self.text, self.query)




def type_word(entity_type: str | None, sentence: str, type_language: str = "auto") -> str | None:
    """The word written for an entity type: Korean for a sentence with Hangul, English otherwise (``auto``);
    ``code`` keeps KLUE's code (PER). An unknown code is written as it is; no type gives None."""
    if entity_type is None:
        return None
    if type_language not in TYPE_LANGUAGES:
        raise InvalidArgumentError(f"type language must be one of {', '.join(TYPE_LANGUAGES)}, got {type_language!r}")
    if type_language == "code":
        return entity_type
    language = type_language if type_language != "auto" else ("ko" if has_hangul(sentence) else "en")
    return TYPE_WORDS[language].get(entity_type.upper(), entity_type)


def check_marker(marker: str) -> str:
    if marker not in MARKERS:
        raise InvalidArgumentError(f"unknown input rendering '{marker}'; choose one of {', '.join(MARKERS)}")
    return marker


def render(row: RelationRow, marker: str = DEFAULT_MARKER, *, sep: str = "[SEP]", type_language: str = "auto"
           ) -> Rendered:
    """Render one row (see the module docstring). ``sep`` is the separator of the baseline's entity segment."""
    check_marker(marker)
    s, o = row.subject, row.object
    if marker == "baseline":
        return Rendered(text=row.sentence, query=f"{s.word}{sep}{o.word}", marker=marker,
                        subject_span=(s.start, s.stop), object_span=(o.start, o.stop), subject_marker=None,
                        object_marker=None)
    s_open, s_close, o_open, o_close = _markers(row, marker, type_language)
    text, spans, opens = _insert(row.sentence, [(s, s_open, s_close), (o, o_open, o_close)])
    query = f"{s_open}{s.word}{s_close} {o_open}{o.word}{o_close}"
    return Rendered(text=text, query=query, marker=marker, subject_span=spans[0], object_span=spans[1],
                    subject_marker=opens[0], object_marker=opens[1])


def render_rows(rows, marker: str = DEFAULT_MARKER, *, sep: str = "[SEP]", type_language: str = "auto"
                ) -> list[Rendered]:
    return [render(r, marker, sep=sep, type_language=type_language) for r in rows]


def _markers(row: RelationRow, marker: str, type_language: str) -> tuple[str, str, str, str]:
    if marker == "entity":
        return "[E1] ", " [/E1]", "[E2] ", " [/E2]"
    s_type = type_word(row.subject.type, row.sentence, type_language)
    o_type = type_word(row.object.type, row.sentence, type_language)
    s_open = f"@ * {s_type} * " if s_type else "@ "
    o_open = f"# ^ {o_type} ^ " if o_type else "# "
    return s_open, " @", o_open, " #"


def _insert(sentence: str, entities: list[tuple[Entity, str, str]]) -> tuple[str, list[tuple[int, int]], list[int]]:
    """Insert opening and closing markers around each entity in one pass over the sentence.

    At one position closing markers come before opening ones; when mentions nest or coincide, the outer one
    opens first and closes last (the subject counts as outer on a tie), so the markers stay balanced."""
    events = []  # (position, closing first, nesting order, entity index, is_open, marker text)
    for i, (entity, open_text, close_text) in enumerate(entities):
        events.append((entity.start, 1, -entity.stop, i, True, open_text))
        events.append((entity.stop, 0, -entity.start, -i, False, close_text))
    events.sort(key=lambda e: e[:4])
    parts: list[str] = []
    pos = length = 0
    starts: dict[int, int] = {}
    opens: dict[int, int] = {}
    stops: dict[int, int] = {}
    for position, _, _, order, is_open, marker_text in events:
        parts.append(sentence[pos:position])
        length += position - pos
        pos = position
        index = order if is_open else -order
        if is_open:
            opens[index] = length
            starts[index] = length + len(marker_text)
        else:
            stops[index] = length
        parts.append(marker_text)
        length += len(marker_text)
    parts.append(sentence[pos:])
    spans = [(starts[i], stops[i]) for i in range(len(entities))]
    return "".join(parts), spans, [opens[i] for i in range(len(entities))]
