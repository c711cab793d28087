"""One normalisation layer before detection, with offsets mapped back to the original.

Detection runs on a normalised copy of the text; findings are mapped back so that the
*original* characters are what gets anonymized. The copy:

* NFKC per character (fullwidth ``＠`` and digits, ligatures, superscripts);
* zero-width characters, soft hyphens, bidi controls (``U+202E`` right-to-left override
  included) and combining marks removed (``jóhn`` reads ``john``; a removed character
  inside or right after a finding is anonymized with it);
* every space variant (no-break, narrow, figure, ideographic, tab) becomes a space,
  every dash variant (en dash, non-breaking hyphen, minus) a ``-``;
* whitespace runs between two digits (line breaks and tabs included) become one space,
  so ``4111 1111\\n1111 1111`` is one number;
* HTML character references (``&#64;``, ``&commat;``, ``&amp;``) and URL-encoded bytes
  (``%40``) are decoded;
* Cyrillic and Greek look-alikes are folded to Latin inside words that mix scripts
  (``jоhn`` with a Cyrillic ``о``); words in one script are left alone.

ASCII text without ``&`` or ``%`` is returned as is (no mapping: the fast path).

Example::

    norm = normalize("mail: john\\u200b@example\\uff0ecom")
    norm.text            # "mail: john@example.com"
    norm.span(6, 22)     # (6, 24): the original characters to anonymize
"""

from __future__ import annotations

import html
import re
import unicodedata
from urllib.parse import unquote

_REMOVED = frozenset(
    "\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e"
    "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_SPACES = frozenset("\t\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
                    "\u2009\u200a\u202f\u205f\u3000\x0b\x0c")  # fmt: skip
_DASHES = frozenset("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d\u2043\u02d7")
#: Cyrillic and Greek letters that look like Latin ones.
CONFUSABLES = {
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d",
    "ӏ": "l", "ԛ": "q", "ԝ": "w", "ё": "e", "ї": "i", "ɑ": "a", "ɡ": "g",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "І": "I", "Ј": "J",
    "α": "a", "ο": "o", "ν": "v", "ρ": "p", "τ": "t", "υ": "u", "κ": "k", "ι": "i",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
}  # fmt: skip
_ENCODED = re.compile(
    r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,30});|(?:%[0-9A-Fa-f]{2})+"
    r"|\\[nrt]"
)
_ESCAPES = {"\\n": "\n", "\\r": "\n", "\\t": " "}
_DIGIT_GAP = re.compile(
    r"(?<=\d)[ \t\r\n\u00a0\u2007\u202f]{2,8}(?=\d)|(?<=\d)[\t\r\n](?=\d)"
    r"|(?<=\d-)[ \t\r\n]{1,8}(?=\d)|(?<=\d)[ \t\r\n]{1,8}(?=-\d)"
    r"|(?<=\w)[ \t]{1,3}(?=@[\w\-]{1,63}\.[^\W\d_]{2,24}\b)"
    r"|(?<=\w@)[ \t]{1,3}(?=[\w\-]{1,63}\.[^\W\d_]{2,24}\b)"
)
_MIXED_WORD = re.compile(r"\w{2,}")


class Normalized:
    """A normalised text and, when it differs, where each character came from."""

    __slots__ = ("text", "original", "_starts", "_ends")

    def __init__(self, text: str, original: str, starts=None, ends=None):
        self.text = text
        self.original = original
        self._starts = starts  # original start of each normalised character
        self._ends = ends  # original end of each normalised character

    @property
    def identity(self) -> bool:
        return self._starts is None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span behind the normalised ``[start, end)`` (invisible
        characters right after it included)."""
        if self._starts is None:
            return start, end
        if end <= start:
            return self._starts[start] if start < len(self._starts) else len(self.original), (
                self._starts[start] if start < len(self._starts) else len(self.original)
            )
        o_start, o_end = self._starts[start], self._ends[end - 1]
        original = self.original
        while o_end < len(original) and _invisible(original[o_end]):
            o_end += 1
        return o_start, o_end


def _invisible(char: str) -> bool:
    return char in _REMOVED or unicodedata.category(char) == "Mn"


def _needs_work(text: str) -> bool:
    return (
        not text.isascii()
        or "&" in text
        or "%" in text
        or "\t" in text
        or "\\" in text
        or _DIGIT_GAP.search(text) is not None
    )


def normalize(text: str) -> Normalized:
    """Normalises ``text`` for detection (see the module doc)."""
    if not _needs_work(text):
        return Normalized(text, text)
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []

    def emit(value: str, start: int, end: int) -> None:
        for char in value:
            chars.append(char)
            starts.append(start)
            ends.append(end)

    cursor = 0
    length = len(text)
    decoded = _decoded_spans(text)
    d_index = 0
    while cursor < length:
        if d_index < len(decoded) and decoded[d_index][0] == cursor:
            _, end, value = decoded[d_index]
            d_index += 1
            for char in value:
                _emit_char(char, cursor, end, emit)
            cursor = end
            continue
        _emit_char(text[cursor], cursor, cursor + 1, emit)
        cursor += 1
    out = "".join(chars)
    out, starts, ends = _join_digit_gaps(out, starts, ends)
    out = _fold_confusables(out)
    if out == text and all(s == i for i, s in enumerate(starts)):
        return Normalized(text, text)
    return Normalized(out, text, starts, ends)


def _decoded_spans(text: str) -> list[tuple[int, int, str]]:
    if "&" not in text and "%" not in text and "\\" not in text:
        return []
    spans = []
    for match in _ENCODED.finditer(text):
        raw = match.group()
        if raw.startswith("\\"):
            value = _ESCAPES[raw]
        elif raw.startswith("&"):
            value = html.unescape(raw)
            if value == raw:
                continue
        else:
            value = unquote(raw, errors="strict") if _utf8_ok(raw) else None
            if value is None or value == raw:
                continue
        spans.append((match.start(), match.end(), value))
    return spans


def _utf8_ok(raw: str) -> bool:
    try:
        bytes(int(raw[i + 1 : i + 3], 16) for i in range(0, len(raw), 3)).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _emit_char(char: str, start: int, end: int, emit) -> None:
    if char.isascii():
        emit(" " if char == "\t" else char, start, end)
        return
    if char in _REMOVED:
        return
    if char in _SPACES:
        emit(" ", start, end)
        return
    if char in _DASHES:
        emit("-", start, end)
        return
    value = unicodedata.normalize("NFKC", char)
    if value != char:
        value = "".join(
            "-" if c in _DASHES else " " if c in _SPACES else c
            for c in value
            if c not in _REMOVED and unicodedata.category(c) != "Mn"
        )
        emit(value, start, end)
        return
    if unicodedata.category(char) == "Mn":
        return
    emit(char, start, end)


def _join_digit_gaps(text: str, starts: list[int], ends: list[int]):
    """Whitespace between digits becomes one space; around a dash or an ``@`` none."""
    pieces, new_starts, new_ends, cursor = [], [], [], 0
    for match in _DIGIT_GAP.finditer(text):
        s, e = match.span()
        joined = text[s - 1] in "-@" or text[e : e + 1] in ("-", "@")
        # Across a line break only groups of three or four digits join (a card or phone
        # wrapped mid-number), not "13/90\n74-600" or a postcode above a phone number.
        short = not (3 <= _digits_before(text, s) <= 4 and 3 <= _digits_after(text, e) <= 4)
        if "\n" in text[s:e] and short and not joined:
            continue  # "13/90\n74-600 Otwock": a house number and a postcode, not one number
        pieces.append(text[cursor:s])
        new_starts.extend(starts[cursor:s])
        new_ends.extend(ends[cursor:s])
        if not joined:
            pieces.append(" ")
            new_starts.append(starts[s])
            new_ends.append(ends[e - 1])
        cursor = e
    if not pieces:
        return text, starts, ends
    pieces.append(text[cursor:])
    new_starts.extend(starts[cursor:])
    new_ends.extend(ends[cursor:])
    return "".join(pieces), new_starts, new_ends


def _digits_before(text: str, index: int) -> int:
    count = 0
    while index > 0 and text[index - 1].isdigit():
        index -= 1
        count += 1
    return count


def _digits_after(text: str, index: int) -> int:
    count = 0
    while index < len(text) and text[index].isdigit():
        index += 1
        count += 1
    return count


def _fold_confusables(text: str) -> str:
    if text.isascii():
        return text
    out = None
    for match in _MIXED_WORD.finditer(text):
        word = match.group()
        if word.isascii() or not any(c in CONFUSABLES for c in word):
            continue
        latin = any("a" <= c.lower() <= "z" for c in word)
        if not latin:
            continue
        if out is None:
            out = list(text)
        for i, c in enumerate(word, match.start()):
            out[i] = CONFUSABLES.get(c, c)
    return text if out is None else "".join(out)
