"""``web.uploads``' close-delimiter check, fed the body in every possible split (pure)."""

from __future__ import annotations

import pytest

from web.uploads import _CloseDelimiter

BODY = (b"--B0undary\r\nContent-Disposition: form-data; name=\"v\"\r\n\r\n1--B0undary-\r\n"
        b"--B0undary\r\nContent-Disposition: form-data; name=\"w\"\r\n\r\n\r\n--B0undary-"
        b"\r\n--B0undary--")
EPILOGUE = b"\r\nafter the end\r\n--B0undary--\r\n"


def _feed(pieces: list[bytes]) -> tuple[bool, bytes]:
    end = _CloseDelimiter(b"B0undary")
    used = b"".join(p[:end.feed(p)] for p in pieces)
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
            seen, used = _feed([BODY[:i], BODY[i:cut]])
            assert not seen and used == BODY[:cut], (cut, i)


def test_a_body_with_no_part_is_the_close_delimiter_alone():
    assert _feed([b"--B0undary--\r\n"]) == (True, b"--B0undary--")
    assert _feed([b"-", b"-B0undary-", b"-"]) == (True, b"--B0undary--")
