"""Multipart framing read ahead of the parser: where the body ends, and each part's raw header
block, from which a file name the parser cut short is recovered whole.

Pure: feeds on bytes, keeps a bounded carry between chunks; ``web/uploads.py`` owns the I/O.
"""

from __future__ import annotations

import re


class Framing:
    """Follows the multipart framing as the body streams by, ahead of the parser: where the
    body ends, and each part's raw header block.

    The end: the parser does not say whether it reached the end, so a body cut short anywhere
    (inside a part's headers, a field's value, between parts) would just leave the parts after
    the cut out. The close delimiter (``--<boundary>--``) cannot occur inside a part (there it
    would end the part), so seeing it means every part arrived. What follows it (an epilogue,
    RFC 2046) is not for the parser: streaming-form-data 2.1 drops the last part's data when
    more than two bytes follow.

    The headers: the parser reads them with ``email.parser``, which ends a header at a bare LF
    and a quoted file name at an unescaped quote, so ``filename="a"b.mp4"`` arrives as ``a``.
    ``filenames`` keeps the raw blocks so the full name can be recovered (``raw_filename``).
    """

    MAX_HEADERS = 16 * 1024

    def __init__(self, boundary: bytes):
        self._delim = b"\r\n--" + boundary
        # A first boundary has no CRLF before it: start as if one had just been seen.
        self._carry = b"\r\n"
        self._in_headers = False
        self.seen = False
        self.headers: list[bytes | None] = []  # raw header block of each part, None if huge

    def feed(self, data: bytes) -> int:
        """Scan ``data``; return how many of its leading bytes belong to the multipart body (up
        to the end of the close delimiter), 0 once that has been seen."""
        if self.seen:
            return 0
        carried = len(self._carry)
        buf = self._carry + data
        # Inside a header block the carry starts with the CRLF that ended the delimiter line:
        # a block without headers is that CRLF and one more.
        pos = 2 if self._in_headers else 0
        while True:
            if self._in_headers:
                end = buf.find(b"\r\n\r\n", pos - 2)
                if end < 0:
                    if len(buf) - pos <= self.MAX_HEADERS:
                        self._carry = buf[pos - 2:]
                        return len(data)
                    self.headers.append(None)  # the parser refuses these anyway
                    self._in_headers, pos = False, len(buf) - len(self._delim) - 1
                    continue
                block = buf[pos:end] if end >= pos else b""
                self.headers.append(block if len(block) <= self.MAX_HEADERS else None)
                self._in_headers, pos = False, end + 4
                continue
            at = buf.find(self._delim, pos)
            after = buf[at + len(self._delim):at + len(self._delim) + 2] if at >= 0 else b""
            if at < 0 or len(after) < 2:
                keep = at if at >= 0 else max(pos, len(buf) - len(self._delim) - 1)
                self._carry = buf[keep:]
                return len(data)
            if after == b"--":
                self.seen = True
                return at + len(self._delim) + 2 - carried
            if after == b"\r\n":
                self._in_headers, pos = True, at + len(self._delim) + 2
            else:
                pos = at + 1  # "--<boundary>" followed by something else: not a delimiter


# In a header parameter: `; name=` (RFC 7230 token characters in the name).
_PARAM = re.compile(r";\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*")


def raw_filename(header_block: bytes | None, name: str) -> str | None:
    """The ``filename`` of a part whose raw headers are ``header_block``, read leniently, if
    the part is a field called ``name``; else None.

    Lenient: a bare LF is part of the value, and a quoted value ends only at a quote followed
    by the next ``; param=`` or the end of the header. ``\\x`` stands for ``x`` (curl escapes
    quotes and backslashes so). ``filename*`` (RFC 5987) is left to the parser.
    """
    if header_block is None:
        return None
    try:
        text = header_block.decode("utf-8")
    except UnicodeDecodeError:
        return None
    for line in text.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-disposition":
            params = _params(value)
            if params.get("name") == name and "filename*" not in params:
                return params.get("filename")
    return None


def _params(value: str) -> dict[str, str]:
    params: dict[str, str] = {}
    pos = value.find(";")
    while pos >= 0 and (m := _PARAM.match(value, pos)):
        key, pos = m.group(1).lower(), m.end()
        if value.startswith('"', pos):
            out, i = [], pos + 1
            while i < len(value):
                ch = value[i]
                if ch == "\\" and i + 1 < len(value):
                    out.append(value[i + 1])
                    i += 2
                    continue
                if ch == '"' and (_PARAM.match(value, i + 1) or not value[i + 1:].strip()):
                    break
                out.append(ch)
                i += 1
            params.setdefault(key, "".join(out))
            pos = i + 1
        else:
            end = value.find(";", pos)
            params.setdefault(key, value[pos:end if end >= 0 else None].strip())
            pos = end if end >= 0 else len(value)
        pos = value.find(";", pos)
    return params


# What clients percent-encode in a multipart file name: browsers LF, CR and the double quote
# (HTML's multipart/form-data encoding algorithm); httpx and urllib3 every C0 control too.
_HTML_ESCAPES = re.compile(r"%([01][0-9a-fA-F]|22)")


def _unescape(filename: str) -> str:
    return _HTML_ESCAPES.sub(lambda m: chr(int(m.group(1), 16)), filename)


def full_name(parsed: str | None, raw: str | None) -> str:
    """The file name to show: the lenient reading where it extends what the parser read (the
    parser stops early, it never reads more), else the parser's; HTML escapes decoded."""
    name = raw if raw is not None and raw.startswith(parsed or "") else parsed
    return _unescape(name or "")
