"""Pure rules for uploaded files: the type is read from the bytes (magic numbers), never taken
from the client's Content-Type or filename; filenames lose paths and control characters; the
download names the file with RFC 6266's `filename*` so any name survives without injection."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

SNIFF_BYTES = 8192  # enough for every signature below and for judging a text file

# (offset, signature, type), checked in order: binary formats we accept or must recognise to
# refuse by name (an .exe renamed .png is `application/x-msdownload`, not an image).
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"MZ", "application/x-msdownload"),
    (0, b"\x7fELF", "application/x-executable"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
)
_TEXT_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_MARKUP_START = re.compile(r"\s*<", re.ASCII)


def sniff(head: bytes) -> str:
    """The media type of a file from its first bytes (`SNIFF_BYTES` of them, or all of a
    shorter file). Text is `text/plain` only when it is UTF-8 without control characters and
    does not start with markup: HTML, SVG or XML is `text/html` (refused unless allowed), so a
    page renamed `.txt` is never accepted as plain text."""
    for offset, signature, media_type in _SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    text = _as_text(head)
    if text is None:
        return "application/octet-stream"
    if _MARKUP_START.match(text.lstrip("\ufeff")):
        return "text/html"
    return "text/plain"


def _as_text(head: bytes) -> str | None:
    """The head decoded as UTF-8 (a character cut at the end of the sample is allowed), or None
    for binary data."""
    if not head:
        return None
    for cut in range(4):  # at most 3 bytes of a cut multi-byte character
        try:
            text = head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return None if _TEXT_CONTROLS.search(text) else text
    return None


class BadFilename(ValueError):
    """A filename that cannot be made safe (a NUL, nothing left after cleaning)."""


_MAX_FILENAME_BYTES = 255


def safe_filename(raw: str) -> str:
    """The client's filename without any path, control or format characters (bidi overrides
    that disguise `exe.png`), NFC-normalised, trimmed, no leading dots, at most 255 bytes of
    UTF-8 (the extension kept). A NUL, or nothing left, is `BadFilename`."""
    if "\x00" in raw:
        raise BadFilename("a filename may not contain NUL")
    name = re.split(r"[\\/]", raw)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch) not in {"Cc", "Cf", "Cs"})
    name = name.strip().lstrip(".").strip()
    if not name:
        raise BadFilename("the filename is empty once paths and control characters are removed")
    return _truncate(name)


def _truncate(name: str) -> str:
    if len(name.encode()) <= _MAX_FILENAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    suffix = f".{ext}" if dot and stem and len(ext.encode()) <= 16 else ""
    base = name[: len(name) - len(suffix)] if suffix else name
    budget = _MAX_FILENAME_BYTES - len(suffix.encode())
    while len(base.encode()) > budget:
        base = base[:-1]
    return base + suffix


def content_disposition(filename: str) -> str:
    """`attachment` (never inline) with an ASCII fallback name and RFC 6266 / 5987 `filename*`
    carrying the real one percent-encoded, so quotes, semicolons or CR/LF cannot break out."""
    fallback = (
        "".join(ch if " " <= ch <= "~" and ch not in '"\\%;' else "_" for ch in filename).strip()
        or "attachment"
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
