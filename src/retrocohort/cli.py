"""The ``retrocohort`` command: a thin typer app over :mod:`retrocohort.study`.

Commands: ``demo`` (synthetic EHR -> flagship study -> report), ``run`` (a
study file on a MIMIC-IV folder), ``synth`` (write a synthetic EHR) and
``check`` (which MIMIC-IV tables and columns a folder has). Errors the user
can fix are printed in red without a traceback and exit with code 2.
"""

from __future__ import annotations

import contextlib
import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .errors import RetrocohortError

app = typer.Typer(
    name="retrocohort",
    help=(
        "Retrospective propensity-matched cohort studies on ICU EHR data (MIMIC-IV layout).\n\n"
        "Examples:\n\n"
        "  retrocohort demo --out demo-output\n\n"
        "  retrocohort run studies/magnesium_ckrt.toml --mimic /data/mimic-iv-2.2 --out mg-study\n\n"
        "  retrocohort synth --out synthetic-ehr --stays 20000 --seed 7\n\n"
        "  retrocohort check /data/mimic-iv-2.2"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

EXIT_USER_ERROR = 2

# The seed study's published flow and dose (ASN Kidney Week 2023, FR-PO129),
# printed beside ours when the flagship study runs.
PUBLISHED_FLOW = {
    "screened": 629,
    "excluded": 296,
    "eligible": 333,
    "exposed": 37,
    "unexposed": 296,
    "matched_exposed": 34,
    "matched_unexposed": 68,
}
PUBLISHED_DOSE = (24.4, 10.6)


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Print a RetrocohortError in red (no traceback) and exit with code 2."""
    try:
        yield
    except RetrocohortError as exc:
        # soft_wrap: long paths and keys stay on one line, so they can be copied.
        err_console.print(f"[bold red]error:[/bold red] [red]{escape(str(exc))}[/red]", soft_wrap=True)
        raise typer.Exit(EXIT_USER_ERROR) from None


@contextlib.contextmanager
def _progress() -> Iterator[Callable[[str, str, str], None]]:
    """A rich progress display; yields the ``progress(key, label, state)`` callback the pipeline calls."""
    with Progress(
        SpinnerColumn(finished_text="[green]done[/green]"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as progress:
        tasks: dict[str, Any] = {}

        def callback(key: str, label: str, state: str) -> None:
            if state == "start":
                tasks[key] = progress.add_task(label, total=1)
            elif key in tasks:
                progress.update(tasks[key], completed=1)

        yield callback


def _check_out(out: Path, force: bool) -> None:
    from .study.outputs import OutputExistsError

    if out.exists() and not force:
        raise OutputExistsError(
            f"output folder {str(out)!r} already exists; choose another --out or pass --force "
            "to replace it (everything in it is deleted)"
        )


def _fmt_count(value: Any, threshold: int) -> str:
    from .report.suppression import format_count

    return format_count(value, threshold)


def _fmt_ratio(est: float, lo: float, hi: float) -> str:
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (est, lo, hi)):
        return "—"
    return f"{est:.2f} ({lo:.2f}–{hi:.2f})"


def _fmt_p(p: float) -> str:
    if not (isinstance(p, (int, float)) and math.isfinite(p)):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def print_summary(result: Any, out: Path | None = None, published: bool = False) -> None:
    """The key table in the terminal: flow, matched counts, primary HRs beside the published ones."""
    from .report.suppression import format_display, is_small, study_disclosure
    from .study.outputs import key_table

    threshold = result.study.report.small_cell_threshold
    # Every count as the written outputs show it (small cells and the cells that would give them back).
    disclosure = study_disclosure(result)
    counts = result.counts
    title = result.study.study.title + (" (SYNTHETIC DATA)" if result.synthetic else "")
    console.rule(f"[bold]{escape(title)}")

    flow = Table(title="Cohort flow", show_edge=False)
    flow.add_column("step")
    flow.add_column("patients", justify="right")
    if published:
        flow.add_column("published", justify="right", style="dim")
    excluded = counts.get("screened", 0) - counts.get("eligible", 0)
    rows = [
        ("screened", counts.get("screened")),
        ("excluded", excluded),
        ("eligible", counts.get("eligible")),
        (f"  {result.study.study.exposure_label} (exposed)", counts.get("exposed")),
        (f"  {result.study.study.comparator_label} (unexposed)", counts.get("unexposed")),
        ("matched, exposed", counts.get("matched_exposed")),
        ("matched, unexposed", counts.get("matched_unexposed")),
    ]
    keys = ["screened", "excluded", "eligible", "exposed", "unexposed", "matched_exposed", "matched_unexposed"]
    for (label, value), key in zip(rows, keys, strict=True):
        cells = [label, format_display(disclosure.count(key, value)) if value is not None else "—"]
        if published:
            cells.append(str(PUBLISHED_FLOW[key]))
        flow.add_row(*cells)
    dose = result.dose_meq
    dose_text = (
        f"{dose['mean']:.1f} ± {dose['sd']:.1f}"
        if all(isinstance(dose.get(k), float) and math.isfinite(dose[k]) for k in ("mean", "sd"))
        # the mean dose of fewer patients than the threshold is nearly one patient's dose
        and not is_small(dose.get("n", counts.get("exposed")), threshold)
        else "—"
    )
    flow.add_row("Mg dose over 48 h, mEq (mean ± SD)", dose_text, *([f"{PUBLISHED_DOSE[0]} ± {PUBLISHED_DOSE[1]}"] if published else []))
    console.print(flow)

    hr = Table(title="Primary estimates (matched cohort)", show_edge=False)
    hr.add_column("outcome")
    hr.add_column("model")
    hr.add_column("HR (95% CI)", justify="right")
    hr.add_column("p", justify="right")
    hr.add_column("published HR (95% CI)", justify="right", style="dim")
    if result.synthetic:
        hr.add_column("planted truth", justify="right", style="cyan")
    for _, row in key_table(result).iterrows():
        cells = [
            "90-day mortality" if row["outcome"] == "death_90d" else "KRT liberation by day 90",
            row["model"].replace("_", " "),
            _fmt_ratio(row["estimate"], row["lower"], row["upper"]),
            _fmt_p(row["p"]),
            _fmt_ratio(row["published"], row["published_lower"], row["published_upper"]),
        ]
        if result.synthetic:
            cells.append(f"{row['planted']:.2f}" if math.isfinite(row["planted"]) else "—")
        hr.add_row(*cells)
    console.print(hr)

    others = [e for e in result.estimates if (e.outcome, e.model, e.population) not in {
        ("death_90d", "cox_adjusted", "matched"), ("krt_liberation_90d", "fine_gray_adjusted", "matched")}]
    if others:
        sens = Table(title="Other models and sensitivity analyses", show_edge=False)
        sens.add_column("model")
        sens.add_column("HR (95% CI)", justify="right")
        sens.add_column("p", justify="right")
        for e in others:
            sens.add_row(escape(e.label), _fmt_ratio(e.estimate, e.lower, e.upper), _fmt_p(e.p))
        console.print(sens)
    if result.e_value is not None:
        console.print(
            f"E-value of the primary HR: {result.e_value['point']:.2f} (CI limit: {result.e_value['ci']:.2f}); "
            f"{escape(disclosure.text(result.e_value_method or ''))}"
        )
    for skipped in result.skipped:
        console.print(
            f"[yellow]skipped[/yellow] {escape(skipped.outcome)} / {escape(skipped.model)} / "
            f"{escape(skipped.population)}: {escape(disclosure.text(skipped.reason))}"
        )
    for note in result.notes:
        console.print(f"[dim]note: {escape(disclosure.text(note))}[/dim]")
    if out is not None:
        console.print(f"\nReport: [bold]{escape(str(out / 'report.html'))}[/bold]  (results.json, tables/, figures/ beside it)")


def _run_and_write(source: Any, study: Any, out: Path, force: bool, engine: str, published: bool) -> Any:
    from .study.outputs import write_outputs
    from .study.pipeline import run_study

    with _progress() as progress:
        result = run_study(source, study, engine=engine, progress=progress)  # type: ignore[arg-type]
        write_outputs(result, out, force=force, progress=progress)
    print_summary(result, out, published=published)
    return result


# --------------------------------------------------------------------------- commands



def _size_and_seed(stays: int | None, seed: int | None) -> dict[str, Any]:
    """generate_synthetic's size and seed arguments, leaving out what the user did not set."""
    return {k: v for k, v in (("stays", stays), ("seed", seed)) if v is not None}

@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), "--out", help="Output folder for the report."),
    stays: int | None = typer.Option(None, "--stays", min=1, help="ICU stays to generate (default: calibrated to the published cohort)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the synthetic EHR (default: the calibrated one)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    data: Path | None = typer.Option(None, "--data", help="Keep the generated synthetic EHR in this folder (default: a temporary folder, deleted afterwards)."),
) -> None:
    """Generate a synthetic EHR, run the flagship magnesium-in-CKRT study on DuckDB and write the report.

    Example: retrocohort demo --out demo-output --force
    """
    from .sources.synthetic import generate_synthetic
    from .study.spec import default_study

    with _user_errors():
        _check_out(out, force)
        if data is not None and data.exists() and any(data.iterdir()):
            from .study.outputs import OutputExistsError

            if not (data / "SYNTHETIC.json").exists():
                raise OutputExistsError(
                    f"data folder {str(data)!r} is not empty and is not a synthetic EHR; choose another --data"
                )
            if not force:
                raise OutputExistsError(
                    f"data folder {str(data)!r} already holds a synthetic EHR; pass --force to regenerate it"
                )
        workdir = Path(tempfile.mkdtemp(prefix="retrocohort-demo-")) if data is None else data
        try:
            kwargs = _size_and_seed(stays, seed)
            started = time.perf_counter()
            with err_console.status("Generating the synthetic EHR (MIMIC-IV layout)..."):
                info = generate_synthetic(workdir, **kwargs)
            err_console.print(
                f"[green]done[/green] synthetic EHR: {getattr(info, 'stays', '?')} ICU stays, seed "
                f"{getattr(info, 'seed', '?')} ({time.perf_counter() - started:.1f} s)"
            )
            study = default_study()
            default_size = stays is None and seed is None
            _run_and_write(workdir, study, out, force, "duckdb", published=default_size)
        finally:
            if data is None:
                shutil.rmtree(workdir, ignore_errors=True)


@app.command()
def run(
    study_file: Path = typer.Argument(..., metavar="STUDY.toml", help="Study file (see docs/study-file.md)."),
    mimic: Path = typer.Option(..., "--mimic", help="MIMIC-IV folder with hosp/ and icu/ (csv.gz or parquet)."),
    engine: str = typer.Option("duckdb", "--engine", help="duckdb (embedded) or spark."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: <study name>-output)."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
) -> None:
    """Run a study file on a MIMIC-IV folder and write the report.

    Example: retrocohort run studies/magnesium_ckrt.toml --mimic /data/mimic-iv-2.2 --out mg-study
    """
    from .errors import InputError
    from .study.spec import load_study

    with _user_errors():
        if engine not in ("duckdb", "spark"):
            raise InputError(f"--engine {engine!r} is not supported; choose duckdb or spark")
        study = load_study(study_file)
        out = out if out is not None else Path(f"{study.study.name}-output")
        _check_out(out, force)
        if not mimic.is_dir():
            raise InputError(f"--mimic {str(mimic)!r} is not a folder; point it at the MIMIC-IV folder holding hosp/ and icu/")
        _run_and_write(mimic, study, out, force, engine, published=study.study.name == "magnesium_ckrt")


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write hosp/ and icu/ into."),
    stays: int | None = typer.Option(None, "--stays", min=1, help="ICU stays (default: calibrated to the published cohort)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default: the calibrated one)."),
    fmt: str = typer.Option("csv.gz", "--format", help="csv.gz (as PhysioNet ships MIMIC-IV) or parquet."),
    force: bool = typer.Option(False, "--force", help="Regenerate OUT if it already holds a synthetic EHR."),
) -> None:
    """Write a synthetic EHR in the MIMIC-IV layout (hosp/, icu/, SYNTHETIC.json).

    Example: retrocohort synth --out synthetic-ehr --stays 20000 --seed 7
    """
    from .errors import InputError
    from .sources.synthetic import generate_synthetic

    with _user_errors():
        if fmt not in ("csv.gz", "parquet"):
            raise InputError(f"--format {fmt!r} is not supported; choose csv.gz or parquet")
        if out.exists() and any(out.iterdir()):
            from .study.outputs import OutputExistsError

            if not (out / "SYNTHETIC.json").exists():
                raise OutputExistsError(f"{str(out)!r} is not empty and is not a synthetic EHR; choose another --out")
            if not force:
                raise OutputExistsError(f"{str(out)!r} already holds a synthetic EHR; pass --force to regenerate it")
        kwargs = {"fmt": fmt, **_size_and_seed(stays, seed)}
        started = time.perf_counter()
        with err_console.status("Generating the synthetic EHR..."):
            info = generate_synthetic(out, **kwargs)
        console.print(
            f"Wrote {getattr(info, 'stays', '?')} ICU stays (seed {getattr(info, 'seed', '?')}) to "
            f"[bold]{escape(str(out))}[/bold] in {time.perf_counter() - started:.1f} s"
        )
        truth = getattr(info, "truth", None) or {}
        effects = {k: v for k, v in truth.items() if k in ("hr_death", "shr_krt", "hr_krt_cause_specific")}
        if effects:
            console.print("Planted truth: " + ", ".join(f"{k} = {v}" for k, v in effects.items()))


_PLUMBING = {"patient key", "admission key", "admission", "ICU stay"}


def _concepts(needed_by: Any) -> list[str]:
    """Study concepts named in ``needed_by`` cells ("serum Mg, creatinine", "death (in-hospital, ...)").

    Commas inside parentheses do not separate concepts; the parenthesised detail
    and the join keys are left out of the summary.
    """
    names = set()
    for cell in needed_by:
        for part in re.split(r",\s*(?![^()]*\))", str(cell)):
            name = re.sub(r"\s*\([^)]*\)", "", part).strip()
            if name and name not in _PLUMBING:
                names.add(name)
    return sorted(names, key=str.lower)


@app.command()
def check(
    path: Path = typer.Argument(..., help="MIMIC-IV folder (hosp/, icu/)."),
) -> None:
    """Report which MIMIC-IV tables and columns a folder has and which study concepts they support.

    Exits 0 when every required table and column is present, 2 otherwise.

    Example: retrocohort check /data/mimic-iv-2.2
    """
    from .errors import SourceError
    from .sources import check_source

    with _user_errors():
        if not path.is_dir():
            raise SourceError(f"{str(path)!r} is not a folder; point it at the MIMIC-IV folder holding hosp/ and icu/")
        report = check_source(path)
        table = Table(title=f"MIMIC-IV tables in {escape(str(path))}", show_edge=False)
        table.add_column("table")
        table.add_column("status")
        table.add_column("missing columns")
        table.add_column("supports")
        missing_required = []
        for name, rows in report.groupby("table", sort=False):
            present = rows[rows["present"]]
            absent = rows[~rows["present"]]
            table_absent = rows["file"].eq("").all()
            required = bool(rows["required"].any())
            concepts = _concepts(rows["needed_by"])
            if table_absent:
                status = "[red]missing (required)[/red]" if required else "[yellow]absent (optional)[/yellow]"
            elif absent.empty:
                status = "[green]present[/green]"
            else:
                status = "[yellow]present, columns missing[/yellow]"
            missing_required += [f"{name}.{c}" for c in absent.loc[absent["required"], "column"]]
            table.add_row(
                escape(str(name)),
                status,
                escape(", ".join(absent["column"])) if not table_absent else "all",
                escape(", ".join(concepts)) if len(present) or not table_absent else f"[dim]{escape(', '.join(concepts))}[/dim]",
            )
        console.print(table)
        if missing_required:
            raise SourceError(
                f"{len(missing_required)} required column(s) missing: {', '.join(missing_required[:12])}"
                + (" ..." if len(missing_required) > 12 else "")
                + "; the study cannot run on this folder until they are added"
            )
        console.print("[green]Every required table and column is present.[/green]")


def main() -> None:  # pragma: no cover - console entry point alias
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
