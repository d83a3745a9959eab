"""``summary.html``: the summary as one self-contained HTML page (the markdown's tables as ``<table>`` elements,
headings, lists, pictures linked relative to the report folder), shown inline by ``snakemake --report``."""

from __future__ import annotations

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em}"
    "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}"
    "th:first-child,td:first-child{text-align:left}th{background:#eee}img{max-width:100%}"
)


def summary_html(markdown_text: str, title: str = "OADP-Flow report") -> str:
    """An HTML document of ``markdown_text`` (Python-Markdown with the ``tables`` extension)."""
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables"], output_format="html")
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
