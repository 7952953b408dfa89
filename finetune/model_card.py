"""The model card (``README.md``) of every folder fewlabel trains, from one layout.

As in sentence-transformers' ``model_card.py`` (a ``ModelCardData`` filled by each model type, rendered by one
template), a trainer fills a :class:`ModelCard` from its marker record and :func:`render` lays it out, so every
card has the same sections in the same order::

    # <title>
    <intro paragraphs>
    ## Data          what it was trained on
    ## Method        (optional) how, where a table row is not enough
    ## Settings      the settings table, then the run's own rows (steps, time, resumed from)
    ## Scores        (optional) dev and test scores
    ## Use           a shell line and a Python line

A card is built from the marker record alone (``fewlabel_model.json``), so it can always be written again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ModelCard", "fine_tuned_from", "number", "percent", "render", "run_rows", "source_lines"]


@dataclass
class ModelCard:
    """What one card says; :func:`render` decides where. ``intro`` paragraphs may hold several lines."""

    title: str
    intro: list[str]
    data: list[str]
    settings: list[tuple[str, object]]
    use_shell: list[str]
    use_python: list[str]
    method: list[str] = field(default_factory=list)
    scores: list[str] | None = None
    settings_title: str = "Settings"
    scores_title: str = "Scores"
    use_lead: str | None = None


def render(card: ModelCard) -> str:
    """The card as Markdown: each section's heading, a blank line, its lines and one blank line."""
    lines = [f"# {card.title}", ""]
    for paragraph in card.intro:
        lines += [paragraph, ""]

    def section(heading: str, body: Sequence[str]) -> None:
        body = list(body)
        while body and body[-1] == "":
            body.pop()
        lines.extend([f"## {heading}", "", *body, ""])

    section("Data", card.data)
    if card.method:
        section("Method", card.method)
    section(card.settings_title, ["| setting | value |", "|---|---|",
                                  *(f"| {name} | {value} |" for name, value in card.settings)])
    if card.scores is not None:
        section(card.scores_title, card.scores)
    section("Use", ([card.use_lead, ""] if card.use_lead else [])
            + ["```bash", *card.use_shell, "```", "", "```python", *card.use_python, "```"])
    return "\n".join(lines)


def number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    """A fraction as a percentage with two decimals (relation extraction reports x100)."""
    return "n/a" if value is None else f"{100 * value:.2f}"


def fine_tuned_from(info: dict) -> str:
    return (f"Fine-tuned from `{info['base']}` by fewlabel ({info['trained_at']}) with sentence-transformers "
            f"{info['versions']['sentence_transformers']}.")


def source_lines(data: dict, suffix: str = " file") -> list[str]:
    """``- train file: `path``` for each source file the caller named."""
    return [f"- {role}{suffix}: `{path}`" for role, path in (data.get("sources") or {}).items()]


def run_rows(info: dict) -> list[tuple[str, object]]:
    """The settings-table rows every trained head ends with: steps, time and the checkpoint it resumed from."""
    rows: list[tuple[str, object]] = [("steps", info["steps"]), ("training time", f"{info['train_seconds']} s")]
    if info.get("resumed_from"):
        rows.append(("resumed from", f"`{Path(info['resumed_from']).name}`"))
    return rows
