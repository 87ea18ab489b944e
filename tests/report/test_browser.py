"""report.html in headless Chromium: figures load, no script errors, numbers equal results.json.

Drives Debian's chromium with its own command-line modes (no Python browser
driver is installed): ``--dump-dom`` returns the DOM after the page's inline
diagnostic script ran (it records script errors and whether every <img>
decoded, naturalWidth > 0), and ``--screenshot`` saves a PNG whose path is
printed (run with ``-s`` to see it). The report and results.json are written
by the pipeline's own ``write_outputs``.
"""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from retrocohort.report.html import estimate_key

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--disable-extensions",
    "--mute-audio",
]


def _chromium(args: list[str], tmp: Path, name: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{name}"
    profile.mkdir()
    env = {**os.environ, "HOME": str(tmp)}
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


class _Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.keys: dict[str, str | None] = {}
        self.imgs: list[dict] = []
        self.diag: dict[str, str | None] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-key" in a:
            self.keys[a["data-key"]] = a.get("data-value")
        if tag == "img":
            self.imgs.append(a)
        if a.get("id") == "report-diagnostics":
            self.diag = a


@pytest.fixture(scope="module")
def rendered(result, tmp_path_factory):
    from retrocohort.study.outputs import write_outputs

    out = tmp_path_factory.mktemp("browser") / "out"
    write_outputs(result, out)
    return out


def _same(page_value: str | None, json_value) -> bool:
    if isinstance(json_value, str) or page_value is None or page_value.startswith("<"):
        return page_value == str(json_value)
    if isinstance(json_value, int) and not isinstance(json_value, bool):
        return page_value == str(json_value)
    return math.isclose(float(page_value), float(json_value), rel_tol=1e-12, abs_tol=0)


@pytest.mark.browser
def test_report_in_headless_chromium(rendered, tmp_path):
    assert Path(CHROMIUM).exists(), f"chromium not found at {CHROMIUM}: install Debian's chromium package"
    report = rendered / "report.html"
    url = report.resolve().as_uri()
    dump = _chromium(
        ["--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0", "--dump-dom", url], tmp_path, "dom"
    )
    assert dump.returncode == 0, dump.stderr[-2000:]
    dom = _Dom()
    dom.feed(dump.stdout)

    # every figure is present and decodes, in the browser and as bytes
    assert dom.diag.get("data-images-loaded") == "all", dom.diag
    assert dom.diag.get("data-images-total") == str(len(dom.imgs)) and len(dom.imgs) >= 5
    for img in dom.imgs:
        src = img["src"]
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # no script error, no console error
    assert dom.diag.get("data-js-errors") == "", dom.diag
    console = [line for line in dump.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console

    # the numbers on the page are those of results.json
    doc = json.loads((rendered / "results.json").read_text())
    for name, value in doc["counts"].items():
        assert _same(dom.keys[name], value), (name, dom.keys[name], value)
    assert _same(dom.keys["dose_mean"], doc["dose"]["mean"]) and _same(dom.keys["dose_sd"], doc["dose"]["sd"])
    assert doc["estimates"], "results.json has no estimates"
    for e in doc["estimates"]:
        for field in ("estimate", "lower", "upper", "p", "n", "n_events"):
            key = estimate_key(e["outcome"], e["model"], e["population"], field)
            assert _same(dom.keys[key], e[field]), (key, dom.keys[key], e[field])
    primary = next(
        e
        for e in doc["estimates"]
        if (e["outcome"], e["model"], e["population"]) == (doc["study"]["primary_outcome"], "cox_adjusted", "matched")
    )
    assert _same(dom.keys[f"primary/{primary['outcome']}"], primary["estimate"])
    for term, row in doc["balance"].items():
        assert _same(dom.keys[f"smd_before/{term}"], row["smd_before"])
        assert _same(dom.keys[f"smd_after/{term}"], row["smd_after"])
    assert _same(dom.keys["e_value_point"], doc["e_value"]["point"])
    for name, outcome in doc["outcomes"].items():  # each outcome's test: log-rank or Gray
        assert outcome["test"] is not None, name
        assert _same(dom.keys[f"test/{name}"], outcome["test"]["p"])
    for k, step in enumerate(doc["attrition"]):
        assert _same(dom.keys[f"attrition_remaining_{k}"], step["remaining"])

    # a screenshot for a human to look at
    shot = tmp_path / "report.png"
    snap = _chromium([f"--screenshot={shot}", "--window-size=1280,4000", url], tmp_path, "shot")
    assert snap.returncode == 0, snap.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    print(f"\nreport screenshot: {shot}")
