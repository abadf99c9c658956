"""Email header values written to hold RFC 2047's limits, which CPython's folding does not.

Python's email policy folds a long or non-ASCII Subject into encoded-words of up to 77
characters on lines of up to 78 (python/cpython#85725), where RFC 2047 section 2 allows 75 and
76. So a Subject that needs encoding is written here as B encoded-words of UTF-8: each split
between characters (never inside one), each line within 76 characters with the header's name,
and decoding them gives back the text exactly (the space between encoded-words is not part of
the text: RFC 2047 section 6.2). Purely computational.
"""

from __future__ import annotations

import base64
from email.message import EmailMessage

ENCODED_WORD_LIMIT = 75  # RFC 2047 section 2: an encoded-word's characters
ENCODED_LINE_LIMIT = 76  # RFC 2047 section 2: a header line holding an encoded-word
PLAIN_WORD_LIMIT = 70  # a longer word cannot be folded onto a line of 78 (RFC 5322 2.1.1)
_PREFIX, _SUFFIX = "=?utf-8?b?", "?="


def set_header(mail: EmailMessage, name: str, value: str) -> None:
    """The header as the email policy writes it when that is right (short ASCII words), else
    as encoded-words written here, kept as they are."""
    if needs_encoding(value):
        mail.set_raw(name, encoded_words(value, name))
    else:
        mail[name] = value


def needs_encoding(value: str) -> bool:
    """Non-ASCII, a word too long to fold, or text a reader would take for an encoded-word."""
    words = value.split()
    return (
        not value.isascii()
        or "=?" in value
        or any(len(word) > PLAIN_WORD_LIMIT for word in words)
        or value != " ".join(words)
    )


def encoded_words(value: str, name: str) -> str:
    """`value` as encoded-words, one a line: the first after `name: `, the others indented."""
    words: list[str] = []
    room = min(ENCODED_WORD_LIMIT, ENCODED_LINE_LIMIT - len(name) - 2)
    chunk = ""
    for character in value:
        if chunk and len(_encoded(chunk + character)) > room:
            words.append(_encoded(chunk))
            chunk, room = "", ENCODED_LINE_LIMIT - 1  # a continuation line starts with a space
        chunk += character
    words.append(_encoded(chunk))
    return "\n ".join(words)


def _encoded(text: str) -> str:
    return f"{_PREFIX}{base64.b64encode(text.encode()).decode('ascii')}{_SUFFIX}"
