"""Pure rules for uploads: the type comes from the bytes, filenames are cleaned, downloads are
named safely."""

from __future__ import annotations

import pytest

from quimbi_tickets.attachments.files import (
    SNIFF_BYTES,
    BadFilename,
    content_disposition,
    safe_filename,
    sniff,
)

pytestmark = pytest.mark.unit

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(32)


@pytest.mark.parametrize(
    ("head", "media_type"),
    [
        (PNG, "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"%PDF-1.7\n%\xe2\xe3", "application/pdf"),
        (b"MZ\x90\x00\x03\x00\x00\x00", "application/x-msdownload"),
        (b"\x7fELF\x02\x01\x01", "application/x-executable"),
        (b"PK\x03\x04\x14\x00", "application/zip"),
        (b"Order 1234 arrived broken.\r\nPhotos follow.\n", "text/plain"),
        ("Grüße aus Köln, ça va?".encode(), "text/plain"),
        (b"<!DOCTYPE html><html><script>alert(1)</script>", "text/html"),
        (b"\xef\xbb\xbf  \n<svg onload=alert(1)>", "text/html"),
        (b"<?xml version='1.0'?><a/>", "text/html"),
        (b"\x00\x01\x02\x03binary", "application/octet-stream"),
        (b"\xc3\x28 not utf-8", "application/octet-stream"),
        (b"", "application/octet-stream"),
    ],
)
def test_the_type_is_read_from_the_bytes(head: bytes, media_type: str) -> None:
    assert sniff(head) == media_type


def test_text_cut_inside_a_character_at_the_end_of_the_sample_is_still_text() -> None:
    head = ("é" * SNIFF_BYTES).encode()[: SNIFF_BYTES - 1]  # ends in half a character
    assert sniff(head) == "text/plain"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("photo.png", "photo.png"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\Desktop\\receipt.pdf", "receipt.pdf"),
        ("in\r\nvoice\t.pdf", "invoice.pdf"),
        ("report\u202egnp.exe", "reportgnp.exe"),  # a right-to-left override disguising .exe
        ("  ..hidden.txt ", "hidden.txt"),
        ("Cafe\u0301.png", "Café.png"),  # NFC
    ],
)
def test_filenames_lose_paths_and_control_characters(raw: str, clean: str) -> None:
    assert safe_filename(raw) == clean


@pytest.mark.parametrize("raw", ["a\x00.png", "", "../", " \x01\x02 ", "..."])
def test_a_filename_with_nul_or_nothing_left_is_refused(raw: str) -> None:
    with pytest.raises(BadFilename):
        safe_filename(raw)


def test_long_filenames_are_cut_to_255_bytes_keeping_the_extension() -> None:
    name = safe_filename("ü" * 300 + ".pdf")
    assert len(name.encode()) <= 255
    assert name.endswith(".pdf")


def test_content_disposition_is_an_attachment_whatever_the_name() -> None:
    header = content_disposition('evil"; filename=x.html\r\nSet-Cookie: a=b;.png')
    assert header.startswith('attachment; filename="')
    assert "\r" not in header
    assert "\n" not in header
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    assert '"' not in fallback
    assert ";" not in fallback
    assert header.endswith(
        "filename*=UTF-8''evil%22%3B%20filename%3Dx.html%0D%0ASet-Cookie%3A%20a%3Db%3B.png"
    )
    assert content_disposition("Grüße.pdf") == (
        "attachment; filename=\"Gr__e.pdf\"; filename*=UTF-8''Gr%C3%BC%C3%9Fe.pdf"
    )
