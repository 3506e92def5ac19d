"""A user's CSV as spreadsheets save it: a BOM (UTF-8, or UTF-16 as Excel's "Unicode Text"); ',', ';' or a tab between the fields; capitals or spaces in the
header. The pairs of `animate_batch`, a dataset's pairs list and preprocess's metadata tables are read so."""

from __future__ import annotations

import csv


def csv_key(written: str) -> str:
    """A CSV header name as the product reads it: ' Video_ID' is video_id."""
    return written.strip().lower()


def csv_table(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    """A user's CSV as spreadsheets save it (a BOM: UTF-8, or UTF-16 as Excel's "Unicode Text"; ',', ';' or a tab
    between the fields, the one its header holds most of; capitals or spaces in the header): its header names as
    written, and its rows keyed by csv_key. UnicodeDecodeError: not text; ValueError: not a CSV."""
    lines = data.decode("utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig").splitlines()
    reader = csv.DictReader(lines, delimiter=max(",;\t", key=lines[0].count) if lines else ",")
    try:
        written = list(reader.fieldnames or [])
        reader.fieldnames = [csv_key(name) for name in written]
        return written, list(reader)
    except csv.Error as err:  # a field over 128 KB (no path is): a traceback before
        raise ValueError(f"not a CSV of paths and values (line {reader.line_num}: {err})") from None


def ragged_row(row: dict) -> int | None:
    """The header's field count when a csv.DictReader row has a field more or fewer (DictReader keeps extras under
    the key None and fills missing fields with None), else None."""
    return len(row) - (None in row) if None in row or None in row.values() else None
