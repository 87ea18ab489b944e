"""Plain-text and HTML rendering of result objects, with R's number formatting.

One module shared by every result's ``__repr__`` and ``_repr_html_`` so that
all of them print numbers the same way R does:

- :func:`format_numbers` is R's ``format(x, digits = d)`` on a vector: every
  element gets the same number of decimals, the fewest that show each element
  with (up to) ``d`` significant digits, and the whole vector switches to
  scientific notation when that is narrower (R's ``formatReal`` with
  ``scipen = 0``);
- :func:`format_pvalues` is R's ``format.pval`` (``< 2e-16`` below machine
  epsilon, fixed and scientific values formatted as separate groups);
- :func:`coefficient_lines` is R's ``printCoefmat`` without significance stars
  (what ``print(coxph)`` shows);
- :func:`matrix_lines` is ``print()`` of a numeric matrix (each column
  formatted on its own), as ``print(survfit)`` and ``print(survdiff)`` show.

Nothing here computes statistics: the functions take numbers already on the
result and return strings. Kept free of pandas/matplotlib imports at module
level so importing a result costs nothing extra.
"""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np

# R's .Machine$double.eps: format.pval's default eps, hence "< 2e-16"
DOUBLE_EPS = float(np.finfo(float).eps)

# R's default getOption("digits"); print.coxph uses max(1, digits - 3) = 4,
# print.survfit / print.survdiff max(digits - 4, 3) = 3.
R_DIGITS = 7


def _sci_parts(x: float, digits: int) -> tuple[int, int]:
    """Significant digits needed (<= digits, trailing zeros dropped) and the decimal exponent of |x|.

    Uses the C library's own decimal rounding (``%e``), as R's ``scientific()`` does for its check.
    """
    if x == 0:
        return 1, 0
    mantissa, exponent = f"{abs(x):.{digits - 1}e}".split("e")
    sig = mantissa.replace(".", "").rstrip("0")
    return max(1, len(sig)), int(exponent)


def _layout(values: Sequence[float], digits: int) -> tuple[bool, int, int]:
    """R's formatReal decision for a vector: (scientific?, decimals, width)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return False, 0, 0
    neg = int(any(v < 0 for v in finite))
    parts = [_sci_parts(v, digits) for v in finite]
    # fixed notation: digits left of the point and decimals needed per element
    max_left = max(neg + (kp + 1 if kp + 1 > 0 else 1) for _, kp in parts)
    rgt = max(max(0, nsig - kp - 1) for nsig, kp in parts)
    width_fixed = max_left + rgt + (1 if rgt else 0)
    # scientific notation: common mantissa digits, 2- or 3-digit exponent
    mxns = max(nsig for nsig, _ in parts)
    kps = [kp for _, kp in parts]
    e_digits = 2 if (max(kps) >= 100 or min(kps) <= -99) else 1
    width_sci = neg + (mxns > 1) + (mxns - 1) + 4 + e_digits
    if width_fixed <= width_sci:  # scipen = 0
        return False, rgt, width_fixed
    return True, mxns - 1, width_sci


def format_numbers(values: Sequence[float], digits: int = R_DIGITS, na: str = "NA") -> list[str]:
    """R's ``format(x, digits = digits)`` of a numeric vector, one common layout, right-justified.

    Parameters
    ----------
    values : numbers (NaN and None print as ``na``, infinities as ``Inf`` / ``-Inf``).
    digits : significant digits, R's ``digits`` argument.
    na : text for a missing value.

    Returns
    -------
    list of str, all of the same width.
    """
    sci, decimals, _ = _layout(values, digits)
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(na)
        elif math.isinf(v):
            out.append("Inf" if v > 0 else "-Inf")
        elif sci:
            out.append(f"{float(v):.{decimals}e}")
        else:
            out.append(f"{float(v):.{decimals}f}")
    width = max((len(s) for s in out), default=0)
    return [s.rjust(width) for s in out]


def format_number(value: float, digits: int = R_DIGITS) -> str:
    """One number as R's ``format(x, digits = digits)`` prints it."""
    return format_numbers([value], digits)[0].strip()


def format_pvalues(pvalues: Sequence[float], digits: int = R_DIGITS - 2, eps: float = DOUBLE_EPS) -> list[str]:
    """R's ``format.pval(pv, digits, eps)``: values below ``eps`` print as ``< 2e-16`` (or ``<2e-16``).

    Values with exponent >= -3 and those below are formatted as two separate
    groups (each with one common layout), exactly as format.pval does.
    """
    pv = [float("nan") if p is None else float(p) for p in pvalues]
    out = ["NA"] * len(pv)
    small = [i for i, p in enumerate(pv) if not math.isnan(p) and p < eps]
    rest = [i for i, p in enumerate(pv) if not math.isnan(p) and p >= eps]
    # R 4.x: exponent -4 stays fixed when digits > 1 ("0.000929", not "9.29e-04")
    expo = {i: (math.floor(math.log10(pv[i])) if pv[i] > 0 else -50) for i in rest}
    fixed = [i for i in rest if expo[i] >= -3 or (expo[i] == -4 and digits > 1)]
    sci = [i for i in rest if i not in fixed]
    for group in (fixed, sci):
        if group:
            for i, s in zip(group, format_numbers([pv[i] for i in group], digits), strict=True):
                out[i] = s.strip()
    if small:
        d = max(1, digits - 2)
        if rest:
            nc = max(len(out[i]) for i in rest)
            if d > 1 and d + 6 > nc:
                d = max(1, nc - 7)
            sep = "" if d == 1 and nc <= 6 else " "
        else:
            sep = "" if d == 1 else " "
        text = "<" + sep + format_number(eps, d)
        for i in small:
            out[i] = text
    return out


def format_pvalue(p: float, digits: int = R_DIGITS - 2) -> str:
    """One p-value as ``format.pval(p, digits)``."""
    return format_pvalues([p], digits)[0]


def _round_half_even(values: np.ndarray, decimals: int) -> np.ndarray:
    # R's round() and numpy's round() both round to even at exact halves of the binary value
    return np.round(values, decimals)


def coefficient_lines(
    rows: Sequence[str],
    columns: Sequence[str],
    matrix: np.ndarray,
    digits: int,
    n_coef_se: int,
    has_test: bool = True,
    has_p: bool = True,
    cells_out: list[list[str]] | None = None,
) -> list[str]:
    """R's ``printCoefmat(x, digits, P.values = TRUE, signif.stars = FALSE)`` as lines.

    ``cells_out``, when given, receives the formatted cells row by row (for an HTML table).

    The first ``n_coef_se`` columns (estimates and standard errors) share one
    layout after rounding to ``max(1, digits - digmin)`` decimals; the test
    column is rounded to ``dig.tst = max(1, min(5, digits - 1))`` decimals;
    the last column (when ``has_p``) goes through :func:`format_pvalues`.
    """
    m = np.asarray(matrix, dtype=float)
    n_rows, n_cols = m.shape
    cells = [[""] * n_cols for _ in range(n_rows)]
    dig_tst = max(1, min(5, digits - 1))
    block = m[:, :n_coef_se]
    finite = np.abs(block[np.isfinite(block) & (block != 0)])
    if finite.size:
        digmin = 1 + np.floor(np.log10([finite.min(), finite.max()]))
        decimals = int(max(1, *(digits - digmin)))
    else:
        decimals = max(1, digits - 1)
    flat = format_numbers(list(_round_half_even(block, decimals).ravel()), digits)
    for k, s in enumerate(flat):
        cells[k // n_coef_se][k % n_coef_se] = s
    col = n_coef_se
    if has_test:
        for i, s in enumerate(format_numbers(list(_round_half_even(m[:, col], dig_tst)), digits)):
            cells[i][col] = s
        col += 1
    for j in range(col, n_cols - (1 if has_p else 0)):
        for i, s in enumerate(format_numbers(list(m[:, j]), digits)):
            cells[i][j] = s
    # a non-zero estimate rounded to zero is shown with one digit fewer instead (as printCoefmat does)
    for i in range(n_rows):
        for j in range(n_coef_se):
            v = m[i, j]
            if math.isfinite(v) and (v == 0) != (float(cells[i][j]) == 0):
                cells[i][j] = format_number(v, max(1, digits - 1))
    if has_p:
        for i, s in enumerate(format_pvalues(list(m[:, -1]), dig_tst)):
            cells[i][-1] = s
    if cells_out is not None:
        cells_out.extend([c.strip() for c in row] for row in cells)
    return table_lines(rows, columns, cells)


def table_lines(rows: Sequence[str], columns: Sequence[str], cells: Sequence[Sequence[str]]) -> list[str]:
    """A character matrix as R's ``print(quote = FALSE, right = TRUE)`` lays it out.

    Row names are left-justified, every column right-justified to the wider
    of its header and its cells, one space between columns.
    """
    row_width = max((len(r) for r in rows), default=0)
    widths = [max([len(c)] + [len(row[j]) for row in cells]) for j, c in enumerate(columns)]
    header = " " * row_width + "".join(" " + c.rjust(w) for c, w in zip(columns, widths, strict=True))
    lines = [header]
    for name, row in zip(rows, cells, strict=True):
        lines.append(name.ljust(row_width) + "".join(" " + s.rjust(w) for s, w in zip(row, widths, strict=True)))
    return lines


def matrix_lines(
    rows: Sequence[str],
    columns: Sequence[str],
    matrix: np.ndarray,
    digits: int,
    cells_out: list[list[str]] | None = None,
) -> list[str]:
    """``print()`` of a numeric matrix: each column formatted on its own with ``digits``.

    ``cells_out``, when given, receives the formatted cells row by row (for an HTML table).
    """
    m = np.asarray(matrix, dtype=float)
    cols = [format_numbers(list(m[:, j]), digits) for j in range(m.shape[1])]
    cells = [[cols[j][i] for j in range(m.shape[1])] for i in range(m.shape[0])]
    if cells_out is not None:
        cells_out.extend([c.strip() for c in row] for row in cells)
    return table_lines(rows, columns, cells)


def html_table(
    rows: Sequence[str],
    columns: Sequence[str],
    cells: Sequence[Sequence[str]],
    caption: str = "",
    left: Sequence[int] = (),
) -> str:
    """An HTML table of already formatted cells (numbers right-aligned; the columns in ``left``, words,
    left-aligned), for ``_repr_html_``."""
    parts = ['<table class="retrocohort">']
    if caption:
        parts.append(f"<caption style='text-align:left'>{html.escape(caption)}</caption>")
    parts.append("<thead><tr><th></th>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr></thead>")
    parts.append("<tbody>")
    for name, row in zip(rows, cells, strict=True):
        tds = "".join(
            f"<td style='text-align:{'left' if j in left else 'right'}'>{html.escape(s.strip())}</td>"
            for j, s in enumerate(row)
        )
        parts.append(f"<tr><th style='text-align:left'>{html.escape(str(name))}</th>{tds}</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def html_block(title: str, lines: Sequence[str], tables: Sequence[str] = (), wrap: bool = False) -> str:
    """A titled HTML block: the given tables, then the remaining text lines in a ``<pre>``
    (``wrap``: long lines of prose wrap instead of running off the cell)."""
    body = "".join(tables)
    text = "\n".join(lines)
    style = " style='white-space:pre-wrap'" if wrap else ""
    pre = f"<pre{style}>{html.escape(text)}</pre>" if text else ""
    return f"<div class='retrocohort-result'><strong>{html.escape(title)}</strong>{body}{pre}</div>"


def lines_to_table(lines: Sequence[str]) -> tuple[list[str], list[str], list[list[str]]]:
    """Split lines made by :func:`table_lines` back into (rows, columns, cells) for an HTML table.

    Splits on whitespace, so it only serves tables whose row names, headers
    and cells contain no spaces (headers may, when given separately).
    """
    header = lines[0].split()
    rows, cells = [], []
    for line in lines[1:]:
        parts = line.split()
        rows.append(parts[0])
        cells.append(parts[1:])
    return rows, header, cells


# --------------------------------------------------------------------------- result renderers
# Each takes a result object (duck-typed, so this module imports no result class) and returns lines.


def _level_label(conf_level: float) -> str:
    # summary.coxph's "lower .95": paste("lower .", round(100 * conf.int, 2))
    return format_number(round(100 * conf_level, 2), R_DIGITS)


def _test_line(label: str, test: Any, digits: int, pdigits: int) -> str:
    stat = format_number(round(float(test.statistic), 2), digits)
    p = format_pvalue(float(test.p_value), pdigits)
    return f"{label}= {stat}  on {test.df} df,   p={p}"


def _cox_parts(fit: Any) -> dict[str, Any]:
    s = fit.summary
    robust = bool(fit.robust)
    digits = max(1, R_DIGITS - 3)  # print.coxph's default
    rows = [str(r) for r in s.index]
    if robust:
        cols = ["coef", "exp(coef)", "se(coef)", "robust se", "z", "p"]
        m = np.column_stack([s["coef"], s["hr"], s["naive_se"], s["se"], s["z"], s["p"]])
        n_cs = 4
    else:
        cols = ["coef", "exp(coef)", "se(coef)", "z", "p"]
        m = np.column_stack([s["coef"], s["hr"], s["se"], s["z"], s["p"]])
        n_cs = 3
    coef_cells: list[list[str]] = []
    coef = coefficient_lines(rows, cols, m, digits, n_cs, cells_out=coef_cells)
    lr = fit.likelihood_ratio
    lr_line = (
        f"Likelihood ratio test={format_number(round(lr.statistic, 2), digits)}  on {lr.df} df, "
        f"p={format_pvalue(lr.p_value, digits)}"
    )
    n_line = f"n= {fit.n}, number of events= {fit.n_events}"
    lev = _level_label(float(fit.conf_level))
    ci_cols = ["exp(coef)", "exp(-coef)", f"lower .{lev}", f"upper .{lev}"]
    ci_cells: list[list[str]] = []
    ci = matrix_lines(
        rows, ci_cols, np.column_stack([s["hr"], 1 / s["hr"], s["lower"], s["upper"]]), digits, cells_out=ci_cells
    )
    tests = []
    if "_concordance_parts" in fit.__dict__:  # computed already: print it; never trigger the O(n log n) pass
        tests.append(
            f"Concordance= {format_number(round(fit.concordance, 3), digits)}  "
            f"(se = {format_number(round(fit.concordance_se, 3), digits)} )"
        )
    else:
        tests.append("Concordance= (not yet computed: read .concordance)")
    pdig = max(1, digits - 4)  # summary.coxph's p digits
    tests.append(_test_line("Likelihood ratio test", lr, digits, pdig))
    tests.append(_test_line("Wald test            ", fit.wald, digits, pdig))
    score = _test_line("Score (logrank) test ", fit.score, digits, pdig)
    rs = fit.robust_score
    if rs is not None:
        score += f",   Robust = {format_number(round(rs.statistic, 2), digits)}  p={format_pvalue(rs.p_value, pdig)}"
    tests.append(score)
    if robust:
        tests += [
            "",
            "  (Note: the likelihood ratio and score tests assume independence of",
            "     observations within a cluster, the Wald and robust score tests do not).",
        ]
    if not fit.converged:
        tests += ["", f"Warning: did not converge in {fit.iterations} iterations"]
    notes = [f"Note: {n}" for n in fit.notes]
    return {
        "call": [fit.call or "cox(...)"],
        "coef": coef,
        "lr": [lr_line, n_line],
        "ci": ci,
        "tests": tests,
        "notes": notes,
        "rows": rows,
        "coef_table": (cols, coef_cells),
        "ci_table": (ci_cols, ci_cells),
    }


def render_cox(fit: Any) -> str:
    """``print(coxph)`` followed by ``summary(coxph)``'s interval table and tests, as one text."""
    p = _cox_parts(fit)
    lines = ["Call:", *p["call"], "", *p["coef"], "", *p["lr"], "", *p["ci"], "", *p["tests"]]
    if p["notes"]:
        lines += ["", *p["notes"]]
    return "\n".join(lines)


def _html_from_lines(table: list[str], caption: str = "") -> str:
    rows, cols, cells = lines_to_table(table)
    if cells and len(cols) != len(cells[0]):  # a cell with a blank in it: show the text as it is
        return f"<pre>{html.escape(chr(10).join(table))}</pre>"
    return html_table(rows, cols, cells, caption)


def render_cox_html(fit: Any) -> str:
    """Notebook rendering of a Cox fit: the two tables as HTML, the rest as text."""
    p = _cox_parts(fit)
    tables = [html_table(p["rows"], *p["coef_table"]), html_table(p["rows"], *p["ci_table"])]
    return html_block(p["call"][0], [*p["lr"], "", *p["tests"], *p["notes"]], tables)


def default_times(times: Sequence[float] | np.ndarray | Any, steps: int = 6) -> list[float]:
    """Six evenly spaced, rounded tick times from 0 to the last time (the default at-risk times)."""
    last = float(np.nanmax(np.asarray(times, dtype=float))) if len(times) else 1.0
    raw = last / steps if last > 0 else 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [k * step for k in range(int(last // step) + 1)]


def _group_labels(group: str | None, values: Sequence[object]) -> list[str]:
    # survfit / survdiff row names: "sex=female"; an ungrouped matrix prints as "[1,]"
    if group is None:
        return [f"[{i + 1},]" for i in range(len(values))]
    return [f"{group}={v}" for v in values]


def _km_lines(km: Any) -> tuple[list[str], list[str], list[str], np.ndarray]:
    m = km.median
    digits = max(R_DIGITS - 4, 3)  # print.survfit's default
    rows = _group_labels(km.group, list(m["group"]) if "group" in m else [None])
    lev = format_number(float(km.conf_level), R_DIGITS)
    cols = ["n", "events", "median", f"{lev}LCL", f"{lev}UCL"]
    mat = m[["n", "events", "median", "lower", "upper"]].to_numpy(dtype=float)
    return matrix_lines(rows, cols, mat, digits), rows, cols, mat


def render_km(km: Any) -> str:
    """``print(survfit)``: n, events, median survival and its confidence limits per group."""
    lines, *_ = _km_lines(km)
    return "\n".join([f"Call: {km.call or 'kaplan_meier(...)'}", "", *lines])


def render_km_html(km: Any) -> str:
    """Notebook rendering of :func:`render_km`."""
    lines, rows, cols, _ = _km_lines(km)
    cells = [line[len(max(rows, key=len)) :].split() for line in lines[1:]]
    return html_block(km.call or "kaplan_meier", [], [html_table(rows, cols, cells)])


def _logrank_lines(lr: Any) -> tuple[list[str], list[str], list[str], list[list[str]], str]:
    t = lr.table
    digits = max(R_DIGITS - 4, 3)  # print.survdiff's default
    rows = _group_labels(lr.group or "group", list(t["group"]))
    cols = ["N", "Observed", "Expected", "(O-E)^2/E", "(O-E)^2/V"]
    mat = t[["n", "observed", "expected", "oe2_e", "oe2_v"]].to_numpy(dtype=float)
    lines = matrix_lines(rows, cols, mat, digits)
    chisq = format_number(round(float(lr.statistic), 1), digits)
    p = format_pvalue(float(lr.p_value), max(1, digits - 2))
    tail = f" Chisq= {chisq}  on {lr.df} degrees of freedom, p= {p}"
    cells = [line[len(max(rows, key=len)) :].split() for line in lines[1:]]
    return lines, rows, cols, cells, tail


def render_logrank(lr: Any) -> str:
    """``print(survdiff)``: N, observed, expected and the chi-square test."""
    lines, _, _, _, tail = _logrank_lines(lr)
    notes = [f"Note: {n}" for n in lr.notes]
    return "\n".join(["Call:", lr.call or "logrank(...)", "", *lines, "", tail, *notes])


def render_logrank_html(lr: Any) -> str:
    """Notebook rendering of :func:`render_logrank`."""
    _, rows, cols, cells, tail = _logrank_lines(lr)
    return html_block(lr.call or "logrank", [tail.strip()], [html_table(rows, cols, cells)])


def render_ph_test(zph: Any) -> str:
    """``print(cox.zph(fit))``: chisq, df and p per term and GLOBAL."""
    t = zph.table
    digits = max(R_DIGITS - 4, 3)  # print.cox.zph's default
    m = t[["chisq", "df", "p"]].to_numpy(dtype=float)
    return "\n".join(coefficient_lines([str(r) for r in t.index], ["chisq", "df", "p"], m, digits, 1))


def render_ph_test_html(zph: Any) -> str:
    """Notebook rendering of :func:`render_ph_test`."""
    t = zph.table
    rows = [str(r) for r in t.index]
    cells: list[list[str]] = []
    coefficient_lines(
        rows,
        ["chisq", "df", "p"],
        t[["chisq", "df", "p"]].to_numpy(dtype=float),
        max(R_DIGITS - 4, 3),
        1,
        cells_out=cells,
    )
    return html_block(
        f"Proportional hazards test (cox.zph, transform = {zph.transform!r})",
        [],
        [html_table(rows, ["chisq", "df", "p"], cells)],
    )


def _cif_lines(ci: Any) -> tuple[list[str], list[str], list[str], list[list[str]]]:
    table = ci.table
    last = [t for t in ci._last_time if math.isfinite(t)]
    times = [t for t in default_times([max(last)] if last else [1.0], steps=5) if t > 0]
    at = ci.cif_at(times)
    levels = list(ci._levels)
    rows = [f"{lev} {ci.cause}" if ci.group is not None else str(ci.cause) for lev in levels]
    cols = [format_number(t) for t in times]
    blocks = []
    for column in ("cif", "variance"):
        values = at[column].to_numpy(dtype=float).reshape(len(levels), len(times))
        blocks.append(matrix_lines(rows, cols, values, R_DIGITS))
    lines = ["Estimates and Variances:", "$est", *blocks[0], "", "$var", *blocks[1]]
    del table
    cells = [line[len(max(rows, key=len)) :].split() for line in blocks[0][1:]]
    return lines, rows, cols, cells


def render_cif(ci: Any) -> str:
    """cuminc's printed estimates and variances for the cause, at pretty time points."""
    lines, *_ = _cif_lines(ci)
    competing = ci.competing_codes
    head = (
        f"Cumulative incidence of cause {ci.cause} (Aalen-Johansen; competing: "
        f"{'every other code' if competing is None else ', '.join(map(str, competing))}; "
        f"censored: {ci.censor_code})"
    )
    notes = [f"Note: {n}" for n in ci.notes]
    return "\n".join([head, *lines, *notes])


def render_cif_html(ci: Any) -> str:
    """Notebook rendering of :func:`render_cif` (the estimates)."""
    _, rows, cols, cells = _cif_lines(ci)
    return html_block(f"Cumulative incidence of cause {ci.cause}", [], [html_table(rows, cols, cells)])


def render_gray(g: Any) -> str:
    """cuminc's ``Tests:`` block for the cause tested (stat, pv, df), plus the per-group counts."""
    head = matrix_lines(
        [str(g.cause)],
        ["stat", "pv", "df"],
        np.array([[g.statistic, g.p_value, g.df]], dtype=float),
        R_DIGITS,
    )
    notes = [f"Note: {n}" for n in g.notes]
    return "\n".join(["Gray's test of equal cumulative incidence", "Tests:", *head, *notes])


def render_gray_html(g: Any) -> str:
    """Notebook rendering of :func:`render_gray`."""
    lines = render_gray(g).splitlines()
    return html_block("Gray's test", [], [_html_from_lines(lines[2 : 3 + 1])])


def _finegray_parts(fg: Any) -> dict[str, list[str]]:
    s = fg.summary
    digits = max(R_DIGITS - 4, 3)  # print.summary.crr's default
    rows = [str(r) for r in s.index]
    pdig = max(R_DIGITS - 5, 2)  # summary.crr rounds p to signif(p, 2)
    p = [float(f"{v:.{pdig - 1}e}") for v in s["p"]]
    coef = matrix_lines(
        rows,
        ["coef", "exp(coef)", "se(coef)", "z", "p-value"],
        np.column_stack([s["coef"], s["hr"], s["se"], s["z"], p]),
        digits,
    )
    a = (1 - float(fg.conf_level)) / 2
    lo, hi = (format_number(100 * v, 3) + "%" for v in (a, 1 - a))
    ci = matrix_lines(
        rows,
        ["exp(coef)", "exp(-coef)", lo, hi],
        np.column_stack([s["hr"], 1 / s["hr"], s["lower"], s["upper"]]),
        digits,
    )
    ll = fg.loglik
    tail = [
        f"Num. cases = {fg.n}",
        f"Pseudo Log-likelihood = {format_number(ll.final, digits)}",
        f"Pseudo likelihood ratio test = {format_number(round(-2 * (ll.null - ll.final), 2), digits)}"
        f"  on {len(rows)} df,",
    ]
    if not fg.converged:
        tail.append(f"Warning: did not converge in {fg.iterations} iterations")
    variance = {
        "crr": "crr's sandwich",
        "cluster": f"cluster-robust ({fg.n_clusters} clusters)",
        "robust": "robust (weighted influence terms)",
    }.get(fg.variance, fg.variance)
    if fg.variance == "crr" and getattr(fg, "censoring_group", None):
        variance = "sandwich with per-group censoring terms (not crr's exactly)"
    level = format_number(100 * float(fg.conf_level), 3)
    shr = [f"Subdistribution hazard ratios ({level}% CI, {variance} variance):"]
    width = max(len(r) for r in rows)
    for r, hr, low, up in zip(rows, s["hr"], s["lower"], s["upper"], strict=True):
        est, low_s, up_s = (v.strip() for v in format_numbers([hr, low, up], 3))
        shr.append(f"  {r.ljust(width)}  sHR {est} ({low_s} to {up_s})")
    counts = [
        f"n = {fg.n}: {fg.n_events} events of cause {fg.cause}, {fg.n_competing} competing, {fg.n_censored} censored"
    ]
    call = f"fine_gray(cause = {fg.cause}, censor_code = {fg.censor_code}) ~ {' + '.join(fg.covariates)}"
    if getattr(fg, "time_varying", ()):
        call += f" + ({' + '.join(fg.time_varying)}) x tf(t)"
    if fg.weights:
        call += f", weights = {fg.weights}"
    if getattr(fg, "censoring_group", None):
        call += f", censoring_group = {fg.censoring_group}"
    return {"call": [call], "counts": counts, "coef": coef, "ci": ci, "tail": tail, "shr": shr}


def render_finegray(fg: Any) -> str:
    """``summary(crr)`` as printed, plus each sHR with its interval in words."""
    p = _finegray_parts(fg)
    return "\n".join(
        [
            "Competing Risks Regression",
            "",
            "Call:",
            *p["call"],
            *p["counts"],
            "",
            *p["coef"],
            "",
            *p["ci"],
            "",
            *p["tail"],
            "",
            *p["shr"],
        ]
    )


def render_finegray_html(fg: Any) -> str:
    """Notebook rendering of :func:`render_finegray`."""
    p = _finegray_parts(fg)
    rows = [str(r) for r in fg.summary.index]
    width = len(max(rows, key=len))
    cells = [line[width:].split() for line in p["coef"][1:]]
    ci_cells = [line[width:].split() for line in p["ci"][1:]]
    ci_cols = p["ci"][0].split()
    tables = [
        html_table(rows, ["coef", "exp(coef)", "se(coef)", "z", "p-value"], cells),
        html_table(rows, ci_cols, ci_cells),
    ]
    return html_block(p["call"][0], [*p["counts"], *p["tail"], "", *p["shr"]], tables)


def forest_of_terms(summary: Any, what: str, ax: Any = None) -> Any:
    """Forest plot of a model's terms through the report's :func:`forest_plot` (one line per term)."""
    from types import SimpleNamespace

    from .report.figures import forest_plot

    s = summary
    rows = [
        SimpleNamespace(
            outcome=str(term), model=what, population="", estimate=float(hr), lower=float(lo), upper=float(up)
        )
        for term, hr, lo, up in zip(s.index, s["hr"], s["lower"], s["upper"], strict=True)
    ]
    return forest_plot(rows, ax=ax)


# --------------------------------------------------------------------------- matching


def render_propensity(ps: Any) -> str:
    """``summary(glm(treat ~ ..., family = binomial))``'s coefficient table, deviances and AIC."""
    s = ps.summary
    o = ps.options
    digits = max(3, R_DIGITS - 3)  # print.summary.glm's default
    rows = [str(r) for r in s.index]
    coef = coefficient_lines(
        rows,
        ["Estimate", "Std. Error", "z value", "Pr(>|z|)"],
        s[["estimate", "std_error", "z", "p"]].to_numpy(dtype=float),
        digits,
        2,
    )
    n = len(ps.score)
    p = len(rows)
    dev = [
        f"    Null deviance: {format_number(ps.null_deviance, 5)}  on {n - 1}  degrees of freedom",
        f"Residual deviance: {format_number(ps.deviance, 5)}  on {n - p}  degrees of freedom",
        f"AIC: {format_number(ps.aic, max(4, digits + 1))}",
        "",
        f"Number of Fisher Scoring iterations: {ps.iterations}",
    ]
    if not ps.converged:
        dev.append("Warning: the fit did not converge")
    call = (
        f"propensity_score({o.get('treatment')} ~ {' + '.join(map(str, o.get('covariates', [])))}, "
        f"link = {o.get('link')!r})"
    )
    notes = [f"Note: {x}" for x in ps.notes]
    return "\n".join(["Call:", call, "", "Coefficients:", *coef, "", *dev, *notes])


def render_propensity_html(ps: Any) -> str:
    """Notebook rendering of :func:`render_propensity`."""
    text = render_propensity(ps).splitlines()
    return html_block(text[1], text[3:])


def render_match(m: Any) -> str:
    """``print(matchit)`` in words and ``summary(matchit)$nn`` (sample sizes by arm)."""
    o = m.options
    caliper = (
        "no caliper"
        if m.caliper_distance is None
        else f"caliper {format_number(m.caliper_distance, 4)} (distance units)"
    )
    ratio = (
        f"variable ratio {o['min_controls']} to {o['max_controls']}:1 (average {o.get('ratio')})"
        if o.get("max_controls")
        else f"{o.get('ratio', 1)}:1"
    )
    head = [
        f'Nearest-neighbour matching (MatchIt method = "nearest") of {o.get("treatment")}: '
        f"{ratio}, {'with' if o.get('replace') else 'without'} replacement, order "
        f"{o.get('order')!r}, {caliper}"
    ]
    if o.get("exact"):
        head.append(f"exact on {', '.join(map(str, o['exact']))}")
    # The MatchIt options beyond a propensity score, when used (estimand, covariate distance, constraints).
    extra = []
    if o.get("estimand", "ATT") != "ATT":
        extra.append(f"estimand {o['estimand']} (controls matched to treated units)")
    if o.get("distance") == "matrix":
        extra.append("a given distance matrix")
    elif o.get("distance", "given") != "given":
        extra.append(f"{o['distance']} distance on {', '.join(map(str, o.get('covariates', [])))}")
    if o.get("mahvars"):
        extra.append(f"Mahalanobis distance on {', '.join(map(str, o['mahvars']))} (mahvars)")
    if o.get("antiexact"):
        extra.append(f"antiexact on {', '.join(map(str, o['antiexact']))}")
    if o.get("covariate_calipers"):
        widths = ", ".join(f"{k} {format_number(v, 4)}" for k, v in o["covariate_calipers"].items())
        extra.append(f"calipers {widths} (covariate units)")
    if o.get("discard", "none") != "none":
        extra.append(f"discard {o['discard']}")
    if o.get("unit_id"):
        extra.append(f"unit.id {', '.join(map(str, o['unit_id']))}")
    head += extra
    c = m.counts
    # summary.matchit rounds the sample sizes (the ESS rows are not whole numbers) to 2 decimals
    lines = matrix_lines(
        [str(r) for r in c.index], [str(x) for x in c.columns], np.round(c.to_numpy(dtype=float), 2), R_DIGITS
    )
    return "\n".join([*head, "", "Sample sizes:", *lines])


def render_match_html(m: Any) -> str:
    """Notebook rendering of :func:`render_match`."""
    text = render_match(m).splitlines()
    c = m.counts
    rows = [str(r) for r in c.index]
    width = len(max(rows, key=len))
    cells = [line[width:].split() for line in text[-len(rows) :]]
    return html_block(text[0], [], [html_table(rows, [str(x) for x in c.columns], cells, "Sample sizes")])


def _balance_cells(b: Any) -> tuple[list[str], list[str], list[list[str]]]:
    import pandas as pd

    frame = pd.DataFrame(b)
    rows = [str(r) for r in frame.index]
    cols = ["type", "mean treated", "mean control", "SMD", "var. ratio"]
    numeric = [
        format_numbers(list(frame[c].astype(float)), 4)
        for c in ("mean_treated", "mean_control", "smd", "variance_ratio")
    ]
    cells = [[str(t), *(col[i] for col in numeric)] for i, t in enumerate(frame["type"])]
    if "sample" in frame.columns:
        cols = ["sample", *cols]
        cells = [[str(s), *row] for s, row in zip(frame["sample"], cells, strict=True)]
    return rows, cols, cells


def render_balance(b: Any) -> str:
    """Balance per term: means by arm, absolute standardized mean difference, variance ratio."""
    rows, cols, cells = _balance_cells(b)
    smd = [float(x) for x in b["smd"]]
    over = sum(1 for x in smd if x > 0.1)
    return "\n".join(
        [
            "Covariate balance (absolute SMD; tableone's ExtractSmd)",
            *table_lines(rows, cols, cells),
            f"{over} of {len(smd)} rows above SMD 0.1",
        ]
    )


def render_balance_html(b: Any) -> str:
    """Notebook rendering of :func:`render_balance`."""
    rows, cols, cells = _balance_cells(b)
    return html_block("Covariate balance", [], [html_table(rows, cols, cells)])


def render_table_one(t: Any) -> str:
    """``print(CreateTableOne(...), smd = TRUE)``'s layout: labels left-aligned, cells right-aligned."""
    import pandas as pd

    frame = pd.DataFrame(t)
    rows = [str(r) for r in frame.index]
    cells = [[str(v) for v in row] for row in frame.itertuples(index=False)]
    widths = [max([len(str(c))] + [len(r[j]) for r in cells]) for j, c in enumerate(frame.columns)]
    label_width = max((len(r) for r in rows), default=0)
    header = " " * label_width + "".join(" " + str(c).center(w) for c, w in zip(frame.columns, widths, strict=True))
    body = [
        r.ljust(label_width) + "".join(" " + v.rjust(w) for v, w in zip(row, widths, strict=True))
        for r, row in zip(rows, cells, strict=True)
    ]
    return "\n".join([header.rstrip(), *(line.rstrip() for line in body)])


def render_table_one_html(t: Any) -> str:
    """Notebook rendering of :func:`render_table_one`."""
    import pandas as pd

    frame = pd.DataFrame(t)
    cells = [[str(v) for v in row] for row in frame.itertuples(index=False)]
    return html_block(
        "Table 1", [], [html_table([str(r) for r in frame.index], [str(c) for c in frame.columns], cells)]
    )


# --------------------------------------------------------------------------- cohort and study result
# The cohort and the study result print counts as every output of the study shows them: the study's
# small-cell threshold applies (suppression.study_disclosure), as in `retrocohort run`'s printed summary.
# A repr ends up in a notebook's stored outputs and in pasted snippets, which travel further than the
# session; the exact counts stay on the object (`.counts`, `.attrition`) for the user who asks for them.

_SUPPRESSED = "(counts below {} suppressed as in the study's outputs; exact: .counts, .attrition)"
_REASON_WIDTH = 72  # attrition reasons are sentences; the text repr cuts them, the HTML shows them whole


class _Withheld:
    """Stands in for a study disclosure that could not be decided (a hand-made log with a value that is
    not a whole number): a repr must not raise, and must not fall back to exact counts either."""

    def __init__(self, threshold: int, rows: int) -> None:
        self.threshold = threshold
        self.attrition = tuple(("?", "?") for _ in range(rows))
        self.estimate_counts: dict[tuple[str, str], tuple[object, object]] = {}

    def count(self, name: str, value: object = None) -> object:
        return "?"

    def text(self, text: str) -> str:
        from .report.suppression import suppress_counts_in_text

        return str(suppress_counts_in_text(text, self.threshold))


def _disclosure(obj: Any, decide: bool = False) -> Any:
    from .report.suppression import DEFAULT_THRESHOLD, decide_disclosure, study_disclosure

    try:
        return decide_disclosure(obj) if decide else study_disclosure(obj)
    except (ValueError, TypeError, KeyError):
        report = getattr(getattr(obj, "study", None), "report", None)
        threshold = getattr(report, "small_cell_threshold", DEFAULT_THRESHOLD)
        attrition = getattr(obj, "attrition", None)
        return _Withheld(int(threshold), 0 if attrition is None else len(attrition))


def _suppressed_line(threshold: int) -> str:
    if threshold <= 0:
        return "(small-cell suppression off: the study's threshold is 0)"
    return _SUPPRESSED.format(threshold)


def _shown(value: object) -> str:
    from .report.suppression import format_display

    return str(format_display(value))


def _cut(text: str, width: int = _REASON_WIDTH) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _ratio(est: float, lo: float, hi: float) -> str:
    # The report's and `retrocohort run`'s layout of a hazard ratio (two decimals, en dash).
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (est, lo, hi)):
        return "—"
    return f"{est:.2f} ({lo:.2f}–{hi:.2f})"


def _p(p: float) -> str:
    if not (isinstance(p, (int, float)) and math.isfinite(p)):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _study_title(study: Any) -> str:
    return str(getattr(getattr(study, "study", None), "title", "") or "(no study attached)")


def _attrition_cells(obj: Any, disclosure: Any, whole: bool) -> tuple[list[str], list[str], list[list[str]]]:
    attrition = obj.attrition
    rows = [str(s) for s in attrition["step"]]
    cells = []
    for i in range(len(attrition)):
        remaining, excluded = disclosure.attrition[i] if i < len(disclosure.attrition) else ("", "")
        reason = attrition["reason"].iloc[i] if "reason" in attrition.columns else ""
        reason = disclosure.text(reason) if isinstance(reason, str) else ""
        # The first line's "excluded" is not a count of anything (nobody is before the index event).
        shown_excluded = "" if i == 0 else _shown(excluded)
        cells.append([_shown(remaining), shown_excluded, reason if whole else _cut(reason)])
    return rows, ["remaining", "excluded", "reason"], cells


def _left_last(lines: list[str], cells: list[list[str]]) -> list[str]:
    """Lines of :func:`table_lines` with the last column (free text) left-aligned instead of right."""
    width = max([len("reason")] + [len(row[-1]) for row in cells])
    out = []
    for line in lines:
        stem = line[: len(line) - width]
        out.append((stem + line[len(line) - width :].strip().ljust(width)).rstrip())
    return out


def _cohort_parts(cohort: Any) -> dict[str, Any]:
    from types import SimpleNamespace

    study = getattr(cohort, "study", None)
    exposure = getattr(getattr(study, "exposure", None), "label", "exposed")
    comparator = getattr(getattr(study, "comparator", None), "label", "comparator")
    try:
        counts = dict(cohort.counts)
    except (KeyError, IndexError, ValueError, TypeError):  # made by hand: no `exposed`, no or a NaN attrition line
        counts = {}
    # The disclosure reads only these three; a view keeps a hand-made cohort's failing .counts out of it.
    disclosure = _disclosure(SimpleNamespace(study=study, attrition=cohort.attrition, counts=counts), decide=True)
    arms = [
        (f"exposed ({exposure})", _shown(disclosure.count("exposed", counts.get("exposed")))),
        (f"comparator ({comparator})", _shown(disclosure.count("comparator", counts.get("comparator")))),
    ]
    columns = [str(c) for c in cohort.data.columns]
    return {
        "title": _study_title(study),
        "source": f"{getattr(cohort, 'engine', '')} on {getattr(cohort, 'source', '') or '(unknown source)'}",
        "disclosure": disclosure,
        "arms": arms,
        "eligible": _shown(disclosure.count("eligible", counts.get("eligible"))),
        "columns": columns,
        "notes": [disclosure.text(n) for n in getattr(cohort, "notes", ()) or ()],
        "threshold": disclosure.threshold,
    }


def render_cohort(cohort: Any) -> str:
    """A built cohort: the study's title, the attrition table, the arms, the columns and the notes.

    Counts below the study's small-cell threshold read ``<5`` (and a count that would give one back
    by subtraction a range), as in every output of the study; no value of any row is printed.
    """
    parts = _cohort_parts(cohort)
    rows, cols, cells = _attrition_cells(cohort, parts["disclosure"], whole=False)
    table = _left_last(table_lines(rows, cols, cells), cells)
    arms = ", ".join(f"{label}: {n}" for label, n in parts["arms"])
    lines = [
        f"Cohort of {parts['title']!r}",
        f"built with {parts['source']}",
        "",
        "Attrition:",
        *table,
        "",
        f"Eligible: {parts['eligible']} patients; {arms}",
        *textwrap.wrap(
            f"Columns ({len(parts['columns'])}): {', '.join(parts['columns'])}", 100, subsequent_indent="  "
        ),
    ]
    if parts["notes"]:
        lines += ["Notes:", *(f"  - {n}" for n in parts["notes"])]
    lines.append(_suppressed_line(parts["threshold"]))
    return "\n".join(lines)


def render_cohort_html(cohort: Any) -> str:
    """Notebook rendering of :func:`render_cohort` (the attrition reasons in full)."""
    parts = _cohort_parts(cohort)
    rows, cols, cells = _attrition_cells(cohort, parts["disclosure"], whole=True)
    arms = html_table([label for label, _ in parts["arms"]], ["patients"], [[n] for _, n in parts["arms"]], "Arms")
    text = [
        f"built with {parts['source']}",
        f"Columns ({len(parts['columns'])}): {', '.join(parts['columns'])}",
        *(f"note: {n}" for n in parts["notes"]),
        _suppressed_line(parts["threshold"]),
    ]
    attrition = html_table(rows, cols, cells, "Attrition", left=[2])
    return html_block(f"Cohort of {parts['title']!r}", text, [attrition, arms], wrap=True)


_POPULATIONS = {"matched": "matched", "full": "full cohort", "iptw": "IPTW"}


def _study_parts(result: Any) -> dict[str, Any]:
    study = result.study
    disclosure = _disclosure(result)
    counts = result.counts or {}
    flow = [
        ("indexed", "with an index event"),
        ("eligible", "eligible"),
        ("exposed", "  exposed"),
        ("comparator", "  comparator"),
        ("matched_exposed", "matched, exposed"),
        ("matched_comparator", "matched, comparator"),
    ]
    flow_rows = [(label, _shown(disclosure.count(key, counts[key]))) for key, label in flow if key in counts]
    outcome_labels = {name: getattr(o, "label", name) for name, o in (study.outcomes or {}).items()}
    estimates: list[tuple[str, list[str]]] = []
    for e in result.estimates:
        shown = disclosure.estimate_counts.get((e.outcome, e.population))
        if shown is None:  # not in the decided family: the plain rule, never the exact count
            shown = (disclosure.count("", e.n), disclosure.count("", e.n_events))
        n, events = shown
        row = [
            outcome_labels.get(e.outcome, e.outcome),
            e.model.replace("_", " "),
            _POPULATIONS.get(e.population, str(e.population)),
            _shown(n),
            _shown(events),
            _ratio(e.estimate, e.lower, e.upper),
            _p(e.p),
        ]
        estimates.append((e.outcome, row))
    order = list(outcome_labels)
    populations = list(_POPULATIONS.values())
    # per outcome in the study's order, the matched cohort first (the study's main population)
    estimates.sort(
        key=lambda item: (
            order.index(item[0]) if item[0] in order else len(order),
            populations.index(item[1][2]) if item[1][2] in populations else len(populations),
        )
    )
    columns = ["outcome", "model", "population", "n", "events", "HR or sHR (95% CI)", "p"]
    subgroups = [
        f"{s.label}: {len(s.levels)} levels, p for interaction {_p(s.p_interaction)}" for s in result.subgroups or ()
    ]
    extra = []
    if result.e_value is not None:
        extra.append(
            f"E-value of the primary HR: {result.e_value.get('point', float('nan')):.2f} "
            f"(CI limit: {result.e_value.get('ci', float('nan')):.2f})"
        )
    key_columns, key_rows = _key_rows(result)
    return {
        "key_columns": key_columns,
        "key_rows": key_rows,
        "title": _study_title(study) + (" (SYNTHETIC DATA)" if result.synthetic else ""),
        "flow": flow_rows,
        "columns": columns,
        "estimates": [row for _, row in estimates],
        "subgroups": subgroups,
        "extra": extra,
        "skipped": [
            f"{s.outcome} / {s.model} / {s.population}: {disclosure.text(s.reason)}" for s in result.skipped or ()
        ],
        "notes": [disclosure.text(n) for n in result.notes or ()],
        "primary": outcome_labels.get(result.primary, result.primary),
        "threshold": disclosure.threshold,
    }


def _key_rows(result: Any) -> tuple[list[str], list[list[str]]]:
    """Each outcome's primary estimate next to the published one and the planted truth (run's key table)."""
    from .report.tables import outcome_names, planted_for, primary_key, published_for

    columns = ["outcome", "model", "population", "HR or sHR (95% CI)", "p", "published"]
    if result.synthetic:
        columns.append("planted")
    rows: list[list[str]] = []
    try:
        names = outcome_names(result)
    except (AttributeError, KeyError, TypeError):  # a hand-made result without the study's outcomes
        return columns, rows
    for name in names:
        outcome = result.study.outcomes.get(name)
        label = f"{outcome.label} by day {outcome.horizon_days:g}" if outcome is not None else name
        _, model, population = primary_key(result, name)
        est = result.estimate(name, model, population)
        published = published_for(result, name)
        row = [
            label,
            model.replace("_", " "),
            _POPULATIONS.get(population, population),
            _ratio(est.estimate, est.lower, est.upper) if est is not None else "skipped",
            _p(est.p) if est is not None else "—",
            _ratio(*published) if published else "—",
        ]
        if result.synthetic:
            truth = planted_for(result, name)
            row.append(f"{truth:.2f}" if truth is not None and math.isfinite(truth) else "—")
        rows.append(row)
    return columns, rows


def _text_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    # Words left-aligned, numbers right-aligned; the first three columns are words.
    widths = [max([len(c)] + [len(r[j]) for r in rows]) for j, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return " ".join(c.ljust(w) if j < 3 else c.rjust(w) for j, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return [line(columns).rstrip(), *(line(r).rstrip() for r in rows)]


def render_study_result(result: Any) -> str:
    """A study result: the cohort flow, every estimate per outcome, subgroups, skipped models and notes.

    Counts read as in ``retrocohort run``'s printed summary and every output (the study's small-cell
    threshold applies).
    """
    p = _study_parts(result)
    width = max(len(label) for label, _ in p["flow"]) if p["flow"] else 0
    lines = [p["title"], ""]
    if p["flow"]:
        lines += ["Cohort flow:", *(f"  {label.ljust(width)} {n}" for label, n in p["flow"]), ""]
    if p["key_rows"]:
        lines.append(f"Main estimates (primary outcome: {p['primary']}):")
        lines += ["  " + s for s in _text_table(p["key_columns"], p["key_rows"])]
        lines.append("")
    lines.append("All estimates:")
    if p["estimates"]:
        lines += ["  " + s for s in _text_table(p["columns"], p["estimates"])]
    else:
        lines.append("  (none: every model was skipped)")
    for section, items in (("Subgroups", p["subgroups"]), ("Skipped", p["skipped"]), ("Notes", p["notes"])):
        if items:
            lines += ["", f"{section}:", *(f"  - {item}" for item in items)]
    if p["extra"]:
        lines += ["", *p["extra"]]
    lines.append(_suppressed_line(p["threshold"]))
    return "\n".join(lines)


def render_study_result_html(result: Any) -> str:
    """Notebook rendering of :func:`render_study_result`."""
    p = _study_parts(result)
    flow = html_table([label.strip() for label, _ in p["flow"]], ["patients"], [[n] for _, n in p["flow"]], "Cohort")
    tables = [flow]
    if p["key_rows"]:
        rows = [r[0] for r in p["key_rows"]]
        key = html_table(rows, p["key_columns"][1:], [r[1:] for r in p["key_rows"]], "Main estimates", left=[0, 1])
        tables.append(key)
    if p["estimates"]:
        rows = [" / ".join(r[:3]) for r in p["estimates"]]
        tables.append(html_table(rows, p["columns"][3:], [r[3:] for r in p["estimates"]], "All estimates"))  # numbers
    text = [f"primary outcome: {p['primary']}"]
    for section, items in (("subgroup", p["subgroups"]), ("skipped", p["skipped"]), ("note", p["notes"])):
        text += [f"{section}: {item}" for item in items]
    text += [*p["extra"], _suppressed_line(p["threshold"])]
    return html_block(p["title"], text, tables, wrap=True)
