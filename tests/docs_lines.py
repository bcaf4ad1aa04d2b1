"""What tests/test_docs.py reads out of the Markdown: command lines, links, headings, sections."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNABLE = "<!-- runnable -->"
FENCE = re.compile(r"^\s*(```+|~~~+)")
INLINE = re.compile(r"(?<!`)`(cvtool [^`]+)`(?!`)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class Line:
    """One ``cvtool ...`` command written in a document, as its words."""

    path: Path
    number: int
    text: str
    words: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.number}: {self.text}"


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(text: str) -> list[tuple[int, str, list[tuple[int, str]], bool]]:
    """Fenced code blocks: (first line number, language, [(number, line)], marked runnable)."""
    found, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        language = lines[i].strip()[len(opening.group(1)):].strip()
        before = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(opening.group(1)):
            body.append((j + 1, lines[j]))
            j += 1
        found.append((i + 1, language, body, before == RUNNABLE))
        i = j + 1
    return found


def outside_blocks(text: str) -> list[tuple[int, str]]:
    """The prose lines, numbered, without the fenced blocks."""
    inside, out = False, []
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            out.append((number, line))
    return out


def words_of(command: str) -> tuple[str, ...] | None:
    """The words of ``cvtool ...`` up to a comment, a pipe or a redirect; None if it is no command."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    kept = []
    for word in words:
        if word in ("|", "||", "&&", ";", ">", "2>", ">>", "&") or word.startswith(("2>", ">")):
            break
        kept.append(word)
    if not kept or Path(kept[0]).name != "cvtool":
        return None
    return tuple(kept)


def block_commands(path: Path, body: list[tuple[int, str]]) -> list[Line]:
    out, pending, start = [], "", 0
    for number, raw in body:
        line = raw.strip()
        if line.startswith("$ "):
            line = line[2:]
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text, pending = pending + line, ""
        words = words_of(re.sub(r"^[A-Z_]+=\S+\s+", "", text))  # a leading VAR=value
        if words is not None:
            out.append(Line(path, start, text, words))
    return out


def commands(path: Path) -> tuple[list[Line], list[list[Line]]]:
    """Every command line of ``path`` (code blocks and inline code), and the runnable blocks'."""
    text = path.read_text(encoding="utf-8")
    found, runnable = [], []
    for _, language, body, marked in blocks(text):
        if language not in ("", "bash", "sh", "shell", "console", "text"):
            continue
        lines = block_commands(path, body)
        found += lines
        if marked:
            runnable.append(lines)
    for number, line in outside_blocks(text):
        for match in INLINE.finditer(line):
            cleaned = re.sub(r"[\[\]]", " ", match.group(1)).replace("...", " ")
            words = words_of(cleaned)
            if words is not None:
                found.append(Line(path, number, match.group(1), words))
    return found, runnable


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped, lower case, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[`*_]|<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in outside_blocks(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[tuple[int, str]]:
    out = []
    for number, line in outside_blocks(path.read_text(encoding="utf-8")):
        line = re.sub(r"`[^`]*`", "", line)
        for match in LINK.finditer(line):
            out.append((number, match.group(1) or match.group(2)))
    return out


def sections(path: Path) -> list[tuple[int, str, str]]:
    """(line number, heading, text up to the next heading of the same or a higher level)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    heads = [(i, len(m.group(1)), m.group(2)) for i, m in
             ((i, HEADING.match(line)) for i, line in enumerate(lines)) if m]
    prose = {n - 1 for n, _ in outside_blocks("\n".join(lines))}
    out = []
    for k, (i, level, title) in enumerate(heads):
        if i not in prose:
            continue
        end = next((j for j, lv, _ in heads[k + 1:] if lv <= level and j in prose), len(lines))
        out.append((i + 1, title, "\n".join(lines[i:end])))
    return out
