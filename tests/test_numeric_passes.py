"""`make test` runs the tests marked `numeric` under capped CPU kernels, over the files NUMERIC_TESTS (Makefile) names,
and on a CPU whose own kernels are AVX2's it leaves them out of the whole-suite pass: a numeric test in another file
would run nowhere there."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def numeric_passes_look_in() -> list[Path]:
    """NUMERIC_TESTS of the Makefile, its continued lines joined."""
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    listed = re.search(r"^NUMERIC_TESTS\s*:=\s*(.+)$", makefile, re.M).group(1).split()
    return [ROOT / p for p in listed]


def test_every_numeric_test_is_in_a_file_the_numeric_passes_run() -> None:
    searched = numeric_passes_look_in()
    assert searched and all(p.exists() for p in searched), searched
    marked = [p for p in (ROOT / "tests").rglob("test_*.py") if re.search(r"mark\.numeric\b", p.read_text())]
    assert len(marked) > 10  # the marker is found where it is used
    outside = [p.relative_to(ROOT) for p in marked if not any(p == s or s in p.parents for s in searched)]
    assert outside == [], f"tests marked numeric outside NUMERIC_TESTS (Makefile): {outside}"
