"""The code blocks of docs/*.md, so tests run the examples the guide shows."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def python_blocks(page: str) -> list[str]:
    """Every ```python block of ``docs/<page>``, in order."""
    text = (DOCS / page).read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def block_defining(page: str, name: str) -> str:
    """The first ```python block of ``docs/<page>`` with a line that starts
    with ``name`` (``"LOGGING"``, ``"class ArticleAdmin"``)."""
    for block in python_blocks(page):
        if re.search(rf"^{re.escape(name)}\b", block, flags=re.MULTILINE):
            return block
    raise LookupError(f"docs/{page} has no python block with a line starting {name!r}")
