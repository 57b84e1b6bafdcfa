"""Line numbers for JSON paths, so config errors can say `tasks.json:14: tasks[2].cron`.

`json` gives values but not where they were; this walks the same text once more and records the
line of every value by its path. It assumes the text already parsed as JSON.
"""

from __future__ import annotations

import bisect
import json
import re

Path = tuple[str | int, ...]

_WS = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_SCALAR = re.compile(r"[^,\]}\s]+")


def value_lines(text: str) -> dict[Path, int]:
    """Map each path (keys and list indexes) to the 1-based line where its value starts."""
    lines: dict[Path, int] = {}
    pos = 0

    newlines = [m.start() for m in re.finditer("\n", text)]

    def line_at(i: int) -> int:  # bisect, not count: a 10,000-task file stays linear
        return bisect.bisect_left(newlines, i) + 1

    def skip(i: int) -> int:
        m = _WS.match(text, i)
        return m.end() if m else i

    def value(i: int, path: Path) -> int:
        i = skip(i)
        lines[path] = line_at(i)
        ch = text[i]
        if ch == "{":
            i = skip(i + 1)
            if text[i] == "}":
                return i + 1
            while True:
                i = skip(i)
                m = _STRING.match(text, i)
                assert m is not None
                key = json.loads(m.group())
                key_line = line_at(i)
                i = skip(m.end())
                i = skip(i + 1)  # ':'
                i = value(i, (*path, key))
                # Point a key's errors at the key itself when the value starts on a later line.
                lines[(*path, key)] = min(lines[(*path, key)], key_line)
                i = skip(i)
                if text[i] == ",":
                    i += 1
                    continue
                return i + 1  # '}'
        if ch == "[":
            i = skip(i + 1)
            if text[i] == "]":
                return i + 1
            n = 0
            while True:
                i = value(i, (*path, n))
                n += 1
                i = skip(i)
                if text[i] == ",":
                    i += 1
                    continue
                return i + 1  # ']'
        if ch == '"':
            m = _STRING.match(text, i)
            assert m is not None
            return m.end()
        m = _SCALAR.match(text, i)
        assert m is not None
        return m.end()

    try:
        value(pos, ())
    except (AssertionError, IndexError):
        pass  # malformed text: callers report the json module's own error instead
    return lines


def line_for(lines: dict[Path, int], path: Path) -> int | None:
    """The line of `path`, or of its nearest ancestor that has one."""
    p = tuple(path)
    while p:
        if p in lines:
            return lines[p]
        p = p[:-1]
    return lines.get(())


def dotted(path: Path) -> str:
    """`('tasks', 2, 'cron')` as `tasks[2].cron`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"
