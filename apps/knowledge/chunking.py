"""Splitting articles into searchable chunks.

- Every FAQ question and alternative question is a chunk of its own, so a paraphrase of any of
  them matches directly (a guide's title and alternative questions too).
- An FAQ's answer is one chunk, read together with its question.
- Guides are split on Markdown headings, then packed sentence by sentence (Chinese 。！？；…,
  English .!?;) up to a size limit, with the last sentence repeated at the start of the next
  chunk. Each chunk keeps the title and headings it sits under as context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from apps.core.text import CJK_RE, split_sentences

# Size limit in estimated model tokens (a Han character is about one token, English about four
# characters a token). Both bundled models read 256-512 tokens; shorter chunks retrieve sharper.
MAX_CHUNK_TOKENS = 220

HEADING_RE = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK_RE = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
EMPHASIS_RE = re.compile(r"(\*\*|__|\*|_|`)")
LIST_MARK_RE = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
TABLE_RULE_RE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$")


@dataclass(frozen=True)
class ChunkDraft:
    position: int
    kind: str  # "question" or "body"
    heading: str
    text: str

    @property
    def is_question(self) -> bool:
        """Questions are embedded as queries: matching a customer's question to an FAQ
        question is a symmetric task (e5 wants "query: " on both sides; measured on BQ)."""
        return self.kind == "question"

    def embedding_text(self) -> str:
        """What the model reads: the text with its headings as context."""
        if self.kind == "question" or not self.heading:
            return self.text
        return f"{self.heading}\n{self.text}"


def estimate_tokens(text: str) -> int:
    han = len(CJK_RE.findall(text))
    return han + (len(text) - han) // 4 + 1


def plain_text(markdown_line: str) -> str:
    """A Markdown line without link targets, emphasis marks or list markers."""
    line = LINK_RE.sub(r"\1", markdown_line)
    line = LIST_MARK_RE.sub("", line)
    return EMPHASIS_RE.sub("", line).strip()


def _cells(line: str) -> list[str]:
    return [plain_text(cell) for cell in line.strip().strip("|").split("|")]


def readable_lines(text: str) -> list[str]:
    """Lines of Markdown (or of a chunk, which keeps tables as written) as a customer reads
    them in a chat bubble: `plain_text`, and each row of a table under its header said in
    words ("国际标准件：发货后时效 7-15个工作日；运费 ¥120起", not the row's cells between
    pipes)."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        header_row = line.strip().startswith("|") and i + 1 < len(lines)
        if header_row and TABLE_RULE_RE.match(lines[i + 1]):
            header = _cells(line)
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                cells = _cells(lines[i])
                han = bool(CJK_RE.search(lines[i] + line))
                colon, semicolon = ("：", "；") if han else (": ", "; ")
                said = semicolon.join(
                    f"{name} {cell}".strip() if name else cell
                    for name, cell in zip(header[1:], cells[1:], strict=False)
                    if cell.strip("-–— ")
                )
                out.append(f"{cells[0]}{colon}{said}" if said else cells[0])
                i += 1
            continue
        out.append(plain_text(line))
        i += 1
    return out


def markdown_sections(body: str) -> list[tuple[list[str], str]]:
    """(heading path, plain text) for each section of a Markdown body."""
    sections: list[tuple[list[str], str]] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []

    def flush() -> None:
        text = "\n".join(line for line in lines if line).strip()
        if text:
            sections.append(([title for _, title in path], text))
        lines.clear()

    for raw in body.splitlines():
        match = HEADING_RE.match(raw)
        if match:
            flush()
            level = len(match.group(1))
            path = [(lvl, title) for lvl, title in path if lvl < level]
            path.append((level, plain_text(match.group(2))))
        else:
            lines.append(plain_text(raw))
    flush()
    return sections


def pack_sentences(text: str, max_tokens: int = MAX_CHUNK_TOKENS) -> list[str]:
    """Group sentences into pieces under the limit; one sentence of overlap between pieces."""
    sentences: list[str] = []
    for paragraph in text.split("\n"):
        parts = split_sentences(paragraph)
        if parts:
            # A line keeps its line break (list items, labels, table rows): joined straight on,
            # Chinese items would run together ("每单1.2倍积分¥20生日券").
            parts[-1] += "\n"
        sentences.extend(parts)
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for sentence in sentences:
        cost = estimate_tokens(sentence)
        if current and size + cost > max_tokens:
            pieces.append(_join(current))
            overlap = current[-1]
            current, size = ([overlap], estimate_tokens(overlap)) if cost < max_tokens else ([], 0)
        current.append(sentence)
        size += cost
    if current:
        pieces.append(_join(current))
    return pieces


def _join(sentences: list[str]) -> str:
    out = ""
    for sentence in sentences:
        if out and out[-1] != "\n" and not (CJK_RE.search(out[-1]) or CJK_RE.search(sentence[0])):
            out += " "
        out += sentence
    return out.strip()


def article_chunks(
    title: str, body: str, questions: list[str], kind: str = "guide"
) -> list[ChunkDraft]:
    """Question chunks, then body chunks. An FAQ's answer stays one chunk with its question
    (the model reads its first few hundred tokens; keywords cover all of it): measured on
    StackFAQ, question + whole answer retrieves better than answer paragraphs."""
    drafts: list[ChunkDraft] = []
    seen: set[str] = set()
    for question in [title, *questions]:
        question = question.strip()
        if question and question.lower() not in seen:
            seen.add(question.lower())
            drafts.append(ChunkDraft(len(drafts), "question", "", question))
    if kind == "faq":
        text = "\n".join(
            f"{headings[-1]}\n{section}" if headings else section
            for headings, section in markdown_sections(body)
        )
        if text:
            drafts.append(ChunkDraft(len(drafts), "body", title, text))
        return drafts
    for headings, text in markdown_sections(body):
        heading = " > ".join([title, *headings])
        for piece in pack_sentences(text):
            drafts.append(ChunkDraft(len(drafts), "body", heading, piece))
    return drafts
