"""CSV / TSV rows with row accounting: every physical line of the file belongs to exactly one record, and a record
that spans lines is reported with its line range, so a stray quote can never hide rows inside another row's text.

A quote that opens a field and is not closed on the same line makes a CSV parser read the following lines as the
inside of that field. Records are read with the standard ``csv`` module in strict mode, counting the physical lines
each one consumes:

- a record spanning lines whose inner lines look like rows of this file (the header's number of fields), or a
  quote never closed before the end of the file, is a ``stray_quote`` error with its line range;
- any other record spanning lines is a ``multiline_field`` error, unless ``multiline_fields=True`` says that line
  breaks inside quoted fields are meant (texts with paragraphs);
- characters after a closing quote (``"abc"def``), or a wrong number of fields, are a ``malformed_line``.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .records import DataError

_QUOTE_HINT = ('; if quotes in this file are plain characters (common in TSV files), set data.params.quotes=false')


class _CountedLines:
    """The file's lines as the csv reader pulls them, remembering which lines each record consumed."""

    def __init__(self, f):
        self._f, self.count, self._pending = f, 0, []

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = next(self._f)
        self.count += 1
        self._pending.append(line)
        return line

    def take(self) -> tuple[int, int, list[str]]:
        """``(first line, last line, raw lines)`` consumed since the last call."""
        lines, self._pending = self._pending, []
        return self.count - len(lines) + 1, self.count, lines


def _looks_like_row(line: str, width: int, delimiter: str, quotechar: str | None) -> bool:
    fields = next(csv.reader([line], delimiter=delimiter, quotechar=quotechar or '"',
                             quoting=csv.QUOTE_NONE if quotechar is None else csv.QUOTE_MINIMAL), [])
    return len(fields) == width


def _span_error(file: str, start: int, end: int, raw: list[str], width: int, delimiter: str,
                quotechar: str | None, unterminated: bool, multiline_fields: bool) -> DataError | None:
    """The error for a record spanning lines ``start..end`` (``None``: a multi-line field that is allowed)."""
    n = end - start + 1
    inner = raw[1:] if unterminated else raw[1:-1]
    if unterminated:
        detail = (f"no closing quote: the quoted field opened on line {start} runs to the end of the file (line {end})"
                  f", swallowing {n} lines into one row. Fix the quote (a quote inside a quoted field is written "
                  f'twice: ""){_QUOTE_HINT}')
    elif inner and all(_looks_like_row(x, width, delimiter, quotechar) for x in inner):
        detail = (f"a quote opened on line {start} is closed only on line {end}: these {n} lines, which look like "
                  f'rows of this file, were read as one field. Fix the quote (a quote inside a quoted field is written '
                  f'twice: ""){_QUOTE_HINT}')
    elif multiline_fields:
        return None
    else:
        return DataError("multiline_field", file, start,
                         f"a quoted field spans lines {start}-{end}; if your texts contain line breaks set "
                         "data.params.multiline_fields=true, otherwise look for a stray quote on line "
                         f"{start}", last_line=end)
    return DataError("stray_quote", file, start, detail, last_line=end)


def iter_delimited(path: Path, delimiter: str, quotechar: str | None = '"', multiline_fields: bool = False,
                   ) -> Iterator[tuple[str, int, dict[str, Any] | DataError]]:
    """``(file, line, row)`` for each data record of a CSV/TSV file (blank lines skipped); a record that cannot be
    used comes as a :class:`DataError` naming its first line (and ``last_line`` when it spans several).

    Args:
        path: the file (UTF-8, an optional BOM).
        delimiter: field separator.
        quotechar: quote character; ``None`` reads quotes as plain characters (``csv.QUOTE_NONE``).
        multiline_fields: accept quoted fields holding line breaks (else they are reported, see the module doc).
    """
    file = str(path)
    csv.field_size_limit(sys.maxsize)  # over-long fields are reported by the text check, with their line
    with open(path, encoding="utf-8-sig", newline="") as f:
        lines = _CountedLines(f)
        reader = csv.reader(lines, delimiter=delimiter, quotechar=quotechar or '"', strict=True,
                            quoting=csv.QUOTE_NONE if quotechar is None else csv.QUOTE_MINIMAL)
        try:
            header = next(reader, None)
        except csv.Error as e:
            raise DataError("malformed_line", file, 1, f"cannot read the header: {e}{_QUOTE_HINT}") from None
        lines.take()
        if header is None:
            return
        repeated = sorted({c for c in header if header.count(c) > 1})
        if repeated:
            raise DataError("malformed_line", file, 1, f"the header repeats column(s) {repeated}: {header}")
        while True:
            try:
                fields, problem = next(reader), None
            except StopIteration:
                return
            except csv.Error as e:
                fields, problem = None, str(e)
            start, end, raw = lines.take()
            if fields == []:  # a blank line
                continue
            unterminated = problem is not None and "end of data" in problem  # a quote still open at the end
            if end > start or unterminated:
                err = _span_error(file, start, end, raw, len(header), delimiter, quotechar, unterminated,
                                  multiline_fields)
                if err is not None or problem is not None:
                    yield file, start, err or DataError("malformed_line", file, start, f"CSV parse error: {problem}"
                                                        f"{_QUOTE_HINT}", last_line=end)
                    continue
            if problem is not None:
                yield file, start, DataError("malformed_line", file, start, f"CSV parse error: {problem} (a quote "
                                             f'inside a quoted field is written twice: ""){_QUOTE_HINT}')
            elif len(fields) != len(header):
                yield file, start, DataError("malformed_line", file, start,
                                             f"row has {len(fields)} fields, the header has {len(header)}: {header}")
            else:
                yield file, start, dict(zip(header, fields))
