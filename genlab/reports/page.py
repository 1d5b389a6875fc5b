"""The pieces every report page is built from: Markdown tables and the HTML page, its tables and figures.

`genlab report`, `genlab compare`, `genlab ood` and `genlab export` write their pages with these, so the
pages share one look and a fix to the escaping or the table syntax reaches all of them.
"""

from __future__ import annotations

import html
from typing import Callable, Sequence

e = html.escape

# One stylesheet for every page; td.num right-aligns numbers, .kind-* colours a metric's kind.
STYLE = ("table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;"
         "vertical-align:top}td.num{text-align:right;font-family:monospace}img{max-width:100%}"
         ".kind-bound{color:#a40}.kind-estimate{color:#046}")


def md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Lines of a Markdown table: the header, the rule, one line per row (cells used as given)."""
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(row) + " |" for row in rows])


AUDIO_SUFFIXES = (".wav", ".ogg", ".mp3", ".flac")  # figure entries played, not shown


def is_audio(path: str) -> bool:
    return str(path).lower().endswith(AUDIO_SUFFIXES)


def md_figures(figures: Sequence[tuple[str, str]]) -> list[str]:
    """A ``## caption`` section with the image (or a link to the audio file) per (caption, relative path)."""
    lines = []
    for caption, path in figures:
        lines += [f"## {caption}", "", f"[{caption}]({path})" if is_audio(path) else f"![{caption}]({path})", ""]
    return lines


def html_start(title: str, width: int = 1000) -> list[str]:
    """The opening of an HTML page: doctype, title, the shared stylesheet, and the ``<h1>`` title."""
    return [f"<!doctype html><meta charset='utf-8'><title>{e(title)}</title>",
            f"<style>body{{font-family:sans-serif;max-width:{width}px;margin:2em auto}}{STYLE}</style>",
            f"<h1>{e(title)}</h1>"]


def html_table(head: Sequence[str], rows: Sequence[Sequence[str]],
               cell: Callable[[int, str], str] | None = None) -> str:
    """An HTML table; every header and cell is escaped. ``cell(column, text)`` may give a cell's own
    ``<td ...>`` (already escaped), e.g. a right-aligned number."""
    cell = cell or (lambda i, text: f"<td>{e(text)}</td>")
    out = ["<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in head) + "</tr>"]
    out += ["<tr>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>" for row in rows]
    return "\n".join(out + ["</table>"])


def numbers_after(first: int) -> Callable[[int, str], str]:
    """A ``cell`` for ``html_table``: columns from ``first`` on are numbers (right-aligned, monospace)."""
    return lambda i, text: f"<td>{e(text)}</td>" if i < first else f"<td class='num'>{e(text)}</td>"


def html_figures(figures: Sequence[tuple[str, str]]) -> list[str]:
    """A ``<h2>`` caption and the image (an ``<audio>`` player for a sound file) per (caption, src)."""
    return [f"<h2>{e(caption)}</h2>" + (f"<audio controls preload='none' src='{e(src)}'></audio>" if is_audio(src)
                                        else f"<img src='{e(src)}' alt='{e(caption)}'>") for caption, src in figures]
