"""``web.uploads``' framing scanner (close delimiter, raw part headers) fed the body in every
possible split, and its lenient reading of file names (pure)."""

from __future__ import annotations

import pytest

from web.multipart import Framing, full_name, raw_filename

BODY = (b"--B0undary\r\nContent-Disposition: form-data; name=\"v\"\r\n\r\n1--B0undary-\r\n"
        b"--B0undary\r\nContent-Disposition: form-data; name=\"w\"\r\n\r\n\r\n--B0undary-"
        b"\r\n--B0undary--")
EPILOGUE = b"\r\nafter the end\r\n--B0undary--\r\n"


HEADERS = [b"Content-Disposition: form-data; name=\"v\"", b"Content-Disposition: form-data; name=\"w\""]


def _feed(pieces: list[bytes], headers: list | None = None) -> tuple[bool, bytes]:
    end = Framing(b"B0undary")
    used = b"".join(p[:end.feed(p)] for p in pieces)
    assert end.headers == (HEADERS if headers is None else headers)
    return end.seen, used


@pytest.mark.parametrize("tail", [b"", b"\r\n", EPILOGUE])
def test_the_close_delimiter_is_found_across_any_split(tail):
    body = BODY + tail
    for i in range(len(body) + 1):
        for j in range(i, min(len(body), i + 20) + 1):
            assert _feed([body[:i], body[i:j], body[j:]]) == (True, BODY), (i, j)


def test_a_body_without_it_is_never_complete():
    for cut in range(len(BODY)):
        for i in range(cut + 1):
            end = Framing(b"B0undary")
            used = [end.feed(BODY[:i]), end.feed(BODY[i:cut])]
            assert not end.seen and used == [i, cut - i], (cut, i)


def test_a_body_with_no_part_is_the_close_delimiter_alone():
    assert _feed([b"--B0undary--\r\n"], []) == (True, b"--B0undary--")
    assert _feed([b"-", b"-B0undary-", b"-"], []) == (True, b"--B0undary--")


def test_a_part_without_headers_and_huge_headers():
    body = b"--B0undary\r\n\r\nx\r\n--B0undary\r\n" + b"X: " + b"y" * 20_000 + b"\r\n\r\n\r\n--B0undary--"
    for i in range(0, 40):
        assert _feed([body[:i], body[i:]], [b"", None]) == (True, body)


CD = 'Content-Disposition: form-data; name="videos"; filename='


@pytest.mark.parametrize("header,expected", [
    (CD + '"plain.mp4"', "plain.mp4"),
    (CD + '"a\\"b.mp4"', 'a"b.mp4'),  # curl: \" for a quote
    (CD + '"a\\\\b.mp4"', "a\\b.mp4"),  # curl: \\ for a backslash
    (CD + '"a"b.mp4"', 'a"b.mp4'),  # an unescaped quote
    (CD + '"say "hi"; ok.mp4"', 'say "hi"; ok.mp4'),
    (CD + '"line\nbreak.mp4"', "line\nbreak.mp4"),  # a bare LF
    (CD + '"a%22b%0Ac.mp4"', "a%22b%0Ac.mp4"),  # decoded later, by _full_name
    (CD + '"שלום עולם.mp4"', "שלום עולם.mp4"),
    (CD + "unquoted.mp4", "unquoted.mp4"),
    ('Content-Disposition: form-data; filename="first.mp4"; name="videos"', "first.mp4"),
    ('content-disposition:form-data;name=videos;filename="x;y=z.mp4"', "x;y=z.mp4"),
    ('Content-Disposition: form-data; name="other"; filename="a.mp4"', None),
    ('Content-Disposition: form-data; name="videos"', None),
    ("Content-Disposition: form-data; name=\"videos\"; filename*=UTF-8''a%20b.mp4", None),
])
def test_raw_filename(header, expected):
    block = b"Content-Type: video/mp4\r\n" + header.encode() + b"\r\nX-Other: 1"
    assert raw_filename(block, "videos") == expected


def test_raw_filename_of_undecodable_or_missing_headers():
    assert raw_filename(b"\xff\xfe", "videos") is None
    assert raw_filename(None, "videos") is None


@pytest.mark.parametrize("parsed,raw,expected", [
    ("line", "line\nbreak.mp4", "line\nbreak.mp4"),  # the parser stopped at the LF
    ("a", 'a"b.mp4', 'a"b.mp4'),  # ... at the quote
    ("a%22b%0Ac%0d.mp4", "a%22b%0Ac%0d.mp4", 'a"b\nc\r.mp4'),  # what browsers send
    ("t%09ab%1b.mp4", "t%09ab%1b.mp4", "t\tab\x1b.mp4"),  # httpx, urllib3: every C0 control
    ("100%25 %20%2F.mp4", "100%25 %20%2F.mp4", "100%25 %20%2F.mp4"),  # nothing else
    ("x.mp4", "other.mp4", "x.mp4"),  # disagreement: the parser wins
    ("x.mp4", None, "x.mp4"),
    (None, None, ""),
])
def testfull_name(parsed, raw, expected):
    assert full_name(parsed, raw) == expected
