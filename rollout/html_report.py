"""Self-contained HTML reports (the champion/challenger comparison, the monitoring dashboard):
tables, matplotlib figures embedded as PNG, one style, and nothing fetched from the network, so a
page can be mailed, logged to MLflow as an artifact or opened offline."""
from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:.5em 0 1em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.same{color:#2a7d2a}.diff{color:#b04a00}img{max-width:100%;margin:.5em 1em .5em 0}"""
PNG_DPI = 90


def agg_figure(**kwargs: Any) -> Any:
    """A matplotlib Figure at PNG_DPI on its own Agg canvas, so that laying it out (`tight_layout`) and
    drawing it (`figure_png(crop=False)`) share one renderer and measure each text once: laid out on
    a default canvas at another dpi, every text was measured again to be drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(dpi=PNG_DPI, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Any, crop: bool = True) -> bytes:
    """A matplotlib Figure as PNG bytes, drawn on the Agg canvas (no pyplot, no global backend change),
    cropped to what it draws; without `crop` (a figure laid out already, `tight_layout`) drawn once
    as it is, on its own canvas where it has one (`agg_figure`): savefig drew a figure once to find
    its extent or its layout, then again."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    if crop:
        fig.savefig(buffer, format="png", dpi=PNG_DPI, bbox_inches="tight")
    else:
        from PIL import Image

        fig.set_dpi(PNG_DPI)
        canvas.draw()
        Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).save(buffer, format="png")
    return buffer.getvalue()


def format_value(value: Any) -> str:
    """A cell's text: four significant digits for floats, a dash for nothing."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def html_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """An HTML table of `rows` under `header`, every cell escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(format_value(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image_tag(name: str, png: bytes) -> str:
    """An <img> holding `png` inline (base64), titled `name`."""
    data = base64.b64encode(png).decode("ascii")
    return f"<img alt='{html.escape(name)}' title='{html.escape(name)}' src=\"data:image/png;base64,{data}\">"


def html_page(title: str, body: Sequence[str], style: str = "") -> str:
    """A whole page: `title` as its title and first heading, then the `body` parts as they are."""
    return "\n".join([f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
                      f"<style>{STYLE}{style}</style></head><body><h1>{html.escape(title)}</h1>", *body, "</body></html>"])
