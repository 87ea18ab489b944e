"""Nothing of the flagship (magnesium, kidneys) outside the places that define it (issue 9).

The flagship lives in its study file; kidney and magnesium words may appear only in the built-in
concepts' definitions (and the eGFR formulas they use), the synthetic EHR generator (which plants the
flagship) and the legacy oracle under tests/. Everywhere else in src/ the code must speak of any study.
"""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "retrocohort"

WORDS = re.compile(r"(?i:magnesium|kidney|creatinine|liberation|ckrt)|\bMg\b|\bKRT\b")

#: Files that define built-ins or plant the flagship.
ALLOWED_FILES = {
    "concepts/builtins.py",  # the built-in concepts' definitions (krt, creatinine_baseline, serum_magnesium...)
    "concepts/scan.py",  # which rows of which tables each built-in reads (the one-scan plan of the built-ins)
    "spec/catalogue.py",  # the built-ins' names, labels and rules in words
    "cohort/kidney.py",  # the eGFR / baseline-creatinine formulas the built-ins call
    "sources/synthetic.py",  # the synthetic EHR generator plants the flagship
}
ALLOWED_PREFIXES = ("sources/_synthetic",)  # the generator's parts

#: Tokens that only look like the words: the flagship's file name, font names, the formula module's name.
NEUTRAL_TOKENS = re.compile(r"magnesium_ckrt|Liberation (?:Sans|Serif|Mono)|cohort\.kidney")

#: Single lines left as they are, each with its reason.
ALLOWED_LINES = {
    # the disclosure scan's list of count words: "12 liberations" in any text is a count to suppress
    ("report/suppression.py", "liberations?"),
    # the package docstring explains the built-ins' NumPy finishing step (creatinine_baseline, egfr_baseline)
    ("concepts/__init__.py", "imputed baseline creatinine"),
}


def offending_lines() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*")):
        if not path.is_file() or path.suffix not in (".py", ".j2", ".html", ".css", ".js", ".toml", ".txt"):
            continue
        rel = path.relative_to(SRC).as_posix()
        if rel in ALLOWED_FILES or rel.startswith(ALLOWED_PREFIXES):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if any(rel == f and token in line for f, token in ALLOWED_LINES):
                continue
            if WORDS.search(NEUTRAL_TOKENS.sub("", line)):
                found.append(f"{rel}:{number}: {line.strip()}")
    return found


def test_no_flagship_words_outside_its_definitions():
    assert offending_lines() == []


def test_the_scan_finds_a_planted_word(tmp_path, monkeypatch):
    # the scan itself can fail: a flagship word in a neutral module is reported with its place
    fake = tmp_path / "retrocohort"
    (fake / "report").mkdir(parents=True)
    (fake / "report" / "text.py").write_text('LABEL = "Days since CKRT start"\nFONT = "Liberation Sans"\n')
    monkeypatch.setitem(globals(), "SRC", fake)
    assert offending_lines() == ['report/text.py:1: LABEL = "Days since CKRT start"']
