"""``summary.html``: the summary as one self-contained HTML page, shown inline by ``snakemake --report``.

:func:`md_text` makes any name (a class, a vocabulary entry, a run, a file name) plain text in Markdown: every
character Markdown could read as markup is backslash-escaped and line breaks become spaces. :func:`summary_html`
renders the Markdown with raw HTML switched off (a ``<`` in the text is shown, never parsed; no autolinks), then
embeds every picture the page shows (``![alt](relative/path.png)``) as a ``data:`` URI, so that the page needs no
file beside it; a picture is shown at most as wide as the page, and a click toggles it to its full size.
"""

from __future__ import annotations

import base64
import html
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

STYLE = (
    "body{font-family:sans-serif;max-width:1400px;margin:1em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}"
    "th:first-child,td:first-child{text-align:left}th{background:#eee}"
    ".zoom input{display:none}.zoom img{max-width:100%;cursor:zoom-in;vertical-align:top;margin:2px}"
    ".zoom input:checked+img{max-width:none;cursor:zoom-out}p:has(.zoom){overflow-x:auto}"
)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>!|])")
_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_IMG = re.compile(r"<img\b[^>]*>")
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def md_text(text: object) -> str:
    """``text`` as plain text inside Markdown (a table cell included): the characters that could open a link, a
    picture, code, emphasis or a tag, or end a table cell, escaped with a backslash; an ``&`` that would start an
    entity written ``&amp;``; control characters and line breaks replaced by one space. Other characters stay as
    they are (``vild_demo`` reads as written)."""
    return _ENTITY.sub("&amp;", _MARKDOWN_SPECIAL.sub(r"\\\1", _CONTROL.sub(" ", str(text))))


def _markdown(text: str) -> str:
    import markdown
    from markdown.extensions import Extension

    class NoRawHtml(Extension):
        """Raw HTML blocks and inline tags stay text; no ``<url>`` autolinks."""

        def extendMarkdown(self, md):  # noqa: N802 (Python-Markdown's name)
            md.preprocessors.deregister("html_block")
            for name in ("html", "autolink", "automail"):
                md.inlinePatterns.deregister(name)
            for char in "<>|":  # md_text escapes them: the backslash must go
                if char not in md.ESCAPED_CHARS:
                    md.ESCAPED_CHARS.append(char)

    return markdown.markdown(text, extensions=["tables", NoRawHtml()], output_format="html")


class _Attributes(HTMLParser):
    def __init__(self):
        super().__init__()
        self.attrs: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        self.attrs = {k: v or "" for k, v in attrs}


def data_uri(path: Path) -> str:
    """``path`` (a PNG or JPEG file) as a ``data:`` URI."""
    return f"data:{_MIME[path.suffix.lower()]};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def embedded_img(path: Path, alt: str) -> str:
    """An ``<img>`` of ``path`` embedded as a data URI, shown page-wide at most; a click toggles its full size."""
    return (
        f'<label class="zoom"><input type="checkbox"><img alt="{html.escape(alt)}" src="{data_uri(path)}" '
        f'title="{html.escape(alt)} (click: full size)"></label>'
    )


def _embed(match: re.Match, base_dir: Path) -> str:
    parser = _Attributes()
    parser.feed(match.group(0))
    src, alt = parser.attrs.get("src", ""), parser.attrs.get("alt", "")
    path = base_dir / unquote(src)
    if ":" in src or Path(src).suffix.lower() not in _MIME or not path.is_file():
        return f"[missing picture: {html.escape(alt or src)}]"
    return embedded_img(path, alt)


def summary_html(markdown_text: str, base_dir: Path, title: str = "OADP-Flow report") -> str:
    """An HTML document of ``markdown_text`` (Python-Markdown with the ``tables`` extension, raw HTML off); its
    pictures, linked relative to ``base_dir``, embedded."""
    body = _IMG.sub(lambda m: _embed(m, base_dir), _markdown(markdown_text))
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
