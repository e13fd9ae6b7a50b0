"""Decoding the text files users hand us (study files, dataset annotations) as UTF-8."""

from __future__ import annotations

REENCODE = "re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8"


def decode_utf8(data: bytes, path, error: type[Exception] = ValueError, advice: str = REENCODE) -> str:
    """`data`, the contents of `path`, as UTF-8 text. Other encodings (latin-1 exports,
    Windows-1252) raise `error` naming the file, the line and the byte, then `advice`,
    not a bare UnicodeDecodeError."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as failure:
        line = data[:failure.start].count(b"\n") + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte 0x{data[failure.start]:02x} at offset "
                    f"{failure.start}); {advice}") from None
