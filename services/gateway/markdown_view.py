"""A draft's markdown as safe HTML for approvers: headings, paragraphs, lists, code, bold.

Every piece of text is redacted and HTML-escaped first (`Html.t`); only then are the few
markdown marks turned into tags, so nothing the agent wrote can become markup, a link or a
script. Anything else stays as written text: an approver sees what will be posted.
"""

from __future__ import annotations

import re
from collections.abc import Callable

INLINE = [(re.compile(r"\*\*(.+?)\*\*"), r"<b>\1</b>"), (re.compile(r"`([^`]+)`"), r"<code>\1</code>")]
BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")
HEADING = re.compile(r"^(#{1,6})\s+(.*)$")


def _inline(text: str) -> str:
    for pattern, tag in INLINE:
        text = pattern.sub(tag, text)
    return text


def render(text: str, escape: Callable[[str], str]) -> str:
    """`escape` redacts and escapes one line (the page's `Html.t`)."""
    out: list[str] = []
    para: list[str] = []
    items: list[str] = []
    kind = ""
    fenced: list[str] | None = None

    def flush() -> None:
        nonlocal kind
        if para:
            out.append("<p>" + "<br>".join(_inline(escape(p)) for p in para) + "</p>")
            para.clear()
        if items:
            tag = "ol" if kind == "ol" else "ul"
            out.append(f"<{tag}>" + "".join(f"<li>{_inline(escape(i))}</li>" for i in items) + f"</{tag}>")
            items.clear()
        kind = ""

    for line in text.splitlines():
        if fenced is not None:
            if line.strip().startswith("```"):
                out.append("<pre>" + escape("\n".join(fenced)) + "</pre>")
                fenced = None
            else:
                fenced.append(line)
            continue
        if line.strip().startswith("```"):
            flush()
            fenced = []
            continue
        heading, bullet, numbered = HEADING.match(line), BULLET.match(line), NUMBERED.match(line)
        if not line.strip():
            flush()
        elif heading:
            flush()
            level = min(len(heading.group(1)) + 2, 6)
            out.append(f"<h{level}>{_inline(escape(heading.group(2)))}</h{level}>")
        elif bullet or numbered:
            want = "ul" if bullet else "ol"
            if para or (kind and kind != want):
                flush()
            kind = want
            items.append((bullet or numbered).group(1))  # type: ignore[union-attr]
        else:
            if items:
                flush()
            para.append(line)
    if fenced is not None:
        out.append("<pre>" + escape("\n".join(fenced)) + "</pre>")
    flush()
    return "".join(out)
