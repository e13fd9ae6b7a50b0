"""One self-contained HTML page: plotly.js embedded once in <head>, figures as divs that call
Plotly.newPlot, pictures as base64 data URIs. Opens from disk and from MLflow's artifact view, offline.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.offline

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1400px; padding: 0 24px 48px; color: #222; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 40px; }
.meta { color: #666; font-size: 0.9em; } .note { background: #fff8e1; border-left: 4px solid #ffb300; padding: 8px 12px; }
table { border-collapse: collapse; margin: 12px 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; } th { background: #f5f5f5; }
.warning { background: #ffebee; border-left: 4px solid #c62828; padding: 8px 12px; font-weight: 600; }
tr.flag td { background: #fff3f3; } tr.best td { background: #f1f8e9; }
figure { display: inline-block; margin: 8px 16px 8px 0; } figure img { max-width: 640px; image-rendering: pixelated; }
figcaption { color: #555; font-size: 0.9em; }
"""


class Html(str):
    """A string that is already HTML (a link): table_html does not escape it."""


@dataclass
class Section:
    """A titled part of the page: an intro paragraph then blocks of HTML (figures, tables, images)."""

    title: str
    intro: str = ""
    blocks: list[str] = field(default_factory=list)


@dataclass
class Page:
    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)
    figures: int = 0
    notice: str = ""  # a warning shown under the title (a smoke run's numbers mean nothing)

    def section(self, title: str, intro: str = "") -> Section:
        self.sections.append(Section(title, intro))
        return self.sections[-1]

    def figure(self, section: Section, fig: go.Figure) -> None:
        """Add a Plotly figure (its div and newPlot call; plotly.js itself comes once, in <head>)."""
        section.blocks.append(fig.to_html(include_plotlyjs=False, full_html=False,
                                          config={"displaylogo": False, "responsive": True}))
        self.figures += 1


def table_html(frame: pd.DataFrame, row_classes: Sequence[str] | None = None, digits: int = 4) -> str:
    """A DataFrame as an escaped HTML table; floats to `digits` significant digits, NaN as "–"."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return "–" if math.isnan(value) else f"{value:.{digits}g}"
        if value is None:
            return "–"
        if isinstance(value, Html):
            return str(value)
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for i, values in enumerate(frame.itertuples(index=False)):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{cell(v)}</td>" for v in values) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def escape_attr(text: str) -> str:
    return html.escape(text, quote=True)


def image_html(png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def paragraph(text: str, css_class: str = "") -> str:
    cls = f' class="{css_class}"' if css_class else ""
    return f"<p{cls}>{html.escape(text)}</p>"


def render(page: Page) -> str:
    """The page as one HTML document with plotly.js inlined exactly once."""
    body = []
    for s in page.sections:
        body.append(f"<section><h2>{html.escape(s.title)}</h2>")
        if s.intro:
            body.append(paragraph(s.intro))
        body.extend(s.blocks)
        body.append("</section>")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(page.title)}</title><style>{STYLE}</style>"
        f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script></head>"
        f"<body data-figures='{page.figures}'><h1>{html.escape(page.title)}</h1>"
        f"<p class='meta'>{html.escape(page.subtitle)}</p>"
        + (paragraph(page.notice, "warning") if page.notice else "")
        + f"{''.join(body)}</body></html>\n"
    )


def write(page: Page, out: Path) -> Path:
    """Write atomically (temp file + rename) so the MLflow UI never serves half a page."""
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(render(page), encoding="utf-8")
    os.replace(tmp, out)
    return out
