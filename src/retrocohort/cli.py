"""The ``retrocohort`` command: a thin typer app over :mod:`retrocohort.study`.

Commands: ``demo`` (synthetic EHR -> flagship study -> report), ``run`` (a
study file on a MIMIC-IV folder), ``validate`` (a plasmode design check of a study
on its data), ``synth`` (write a synthetic EHR) and ``check`` (which MIMIC-IV
tables and columns a folder has). Errors the user can fix are printed in red without a traceback and exit with code 2.

Exit codes (docs/cli.md, "Exit codes"): 0 = done (analysed); 2 = bad input, a refusal, or an interruption
(Ctrl-C, kill); 3 = the command ran and wrote what it could (attrition, counts, descriptive tables), but the
cohort was too small for any model: nothing was estimated.
"""

from __future__ import annotations

from . import _startup
from ._labels import by_day, units

_startup.install()  # until the imports below are done (see _startup.py)

import contextlib
import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .errors import RetrocohortError

_startup.release()


class _Commands(typer.core.TyperGroup):
    """The command group; before click parses a command line it refuses what click would take silently."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        _refuse_ambiguous_options(self, ctx, args)
        return super().parse_args(ctx, args)


#: click's UsageError as typer ships it (typer vendors click and exports only BadParameter, its subclass):
#: raised before a command runs, it prints the usage line and one error box and exits 2, as click's own errors.
_UsageError: Any = typer.BadParameter.__mro__[1]


def _refuse_ambiguous_options(group: Any, ctx: Any, args: list[str]) -> None:
    """An option given twice (click keeps the last one without a word), and a value option followed by another
    option (``--out --force`` would write to a folder named "--force"): usage errors, exit 2.

    Options that take several values (``--effect``, ``--table``) may repeat; ``--count`` and ``--no-count`` are
    one option.
    """
    if "--help" in args or not args:
        return
    command = group.get_command(ctx, args[0])
    if command is None:
        return  # click says "No such command"
    options: dict[str, Any] = {}
    for param in command.params:
        if getattr(param, "param_type_name", "") == "option":
            for name in (*param.opts, *param.secondary_opts):
                options[name] = param
    given: dict[str, list[str]] = {}
    tokens = iter(args[1:])
    for token in tokens:
        if token == "--":
            break
        name, eq, value = token.partition("=")
        param = options.get(name)
        if param is None:
            continue
        if not param.is_flag and not eq:
            value = next(tokens, "")
            if value in options or value == "--help":
                raise _UsageError(
                    f"{name} needs a value, but the option {value} follows it; write {name} VALUE "
                    f"(e.g. {_option_example(name)})",
                    ctx=ctx,
                )
        if not param.multiple:
            given.setdefault(param.name or name, []).append(f"{name} {value}".strip() if not param.is_flag else name)
    for written in given.values():
        if len(written) > 1:
            raise _UsageError(
                f"{written[0].split()[0]} is given {len(written)} times ({', '.join(written)}); give it once",
                ctx=ctx,
            )


def _option_example(name: str) -> str:
    examples = {"--out": "--out my-study", "--mimic": "--mimic /data/mimic-iv-2.2", "--study": "--study my_study.toml"}
    return examples.get(name, f"{name} 2")


app = typer.Typer(
    cls=_Commands,
    name="retrocohort",
    help=(
        "Retrospective propensity-matched cohort studies on ICU EHR data (MIMIC-IV layout).\n\n"
        "Examples:\n\n"
        "  retrocohort demo --out demo-output\n\n"
        "  retrocohort run studies/magnesium_ckrt.toml --mimic /data/mimic-iv-2.2 --out mg-study\n\n"
        "  retrocohort synth --out synthetic-ehr --stays 20000 --seed 7\n\n"
        "  retrocohort check /data/mimic-iv-2.2\n\n"
        "Exit codes: 0 done; 2 bad input, a refusal or an interruption; 3 ran and wrote its outputs, "
        "but the cohort was too small for any model (docs/cli.md)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

EXIT_OK = 0
EXIT_USER_ERROR = 2
#: Valid input, but nothing could be estimated (an empty cohort, or one too small for every model). A
#: pipeline must not take such a run for an answer, nor for a bad input to fix.
EXIT_NOTHING_ESTIMATED = 3

# --------------------------------------------------------------------------- helpers


_MEMORY_LIMIT = re.compile(r"(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)", re.IGNORECASE)
MEMORY_LIMIT_HELP = "DuckDB memory limit, e.g. 1GB (default: DuckDB's, 80% of RAM)."
THREADS_HELP = "DuckDB threads, e.g. 2 (default: DuckDB's, every core)."


# --------------------------------------------------------------------------- options shared by commands
# One definition per option that several commands declare alike, so that a name, default or help text
# cannot drift between them; an option whose help differs per command is written where it is used.

StudyFileArg = Annotated[
    Path,
    typer.Argument(metavar="STUDY.toml", help="Study file in the study language (see docs/study-language.md)."),
]
MimicOpt = Annotated[Path, typer.Option("--mimic", help="MIMIC-IV folder with hosp/ and icu/ (csv.gz or parquet).")]
ReplaceOutOpt = Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")]
TrialReplicatesOpt = Annotated[
    int | None,
    typer.Option(
        "--replicates",
        min=2,
        help="Bootstrap replicates of the target trial (\\[analysis.target_trial]); default: the study's.",
    ),
]
TrialProcessesOpt = Annotated[
    int | None,
    typer.Option(
        "--processes",
        min=1,
        help="Worker processes of the target trial's bootstrap (default: all available cores); "
        "the results do not depend on it.",
    ),
]
MemoryLimitOpt = Annotated[str | None, typer.Option("--memory-limit", help=MEMORY_LIMIT_HELP)]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help=THREADS_HELP)]


def _check_engine(engine: str) -> None:
    """Refuse an ``--engine`` other than duckdb or spark (run, validate), before any data are read."""
    from .errors import InputError

    if engine not in ("duckdb", "spark"):
        raise InputError(f"--engine {engine!r} is not supported; choose duckdb or spark")


def _check_mimic_folder(mimic: Path) -> None:
    """Refuse a ``--mimic`` that is not a folder (run, validate)."""
    from .errors import InputError

    folder = mimic.expanduser()  # a quoted "~/mimic" reaches us unexpanded; MimicIV expands it too
    if folder.is_file():
        raise InputError(
            f"--mimic {str(mimic)!r} is a file: it is not a folder; point it at the MIMIC-IV folder "
            "holding hosp/ and icu/"
        )
    if not folder.is_dir():
        raise InputError(
            f"--mimic {str(mimic)!r} is not a folder; point it at the MIMIC-IV folder holding hosp/ and icu/"
        )


#: Largest synthetic EHR the command line writes: ten times the benchmarks' 100,000 stays (MIMIC-IV v2.2 has
#: 73,181 ICU stays). --stays 1000000000 would run for hours and exhaust memory before saying anything.
MAX_STAYS = 1_000_000
_UNEXPANDED = re.compile(r"\$(?:\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)")


def _user_path(path: Path, option: str) -> Path:
    """A path as the user meant it: ``~`` expanded (quoted, the shell leaves it), an unexpanded ``$VAR`` refused.

    Without this a quoted ``"~/mimic"`` or ``'$HOME/out'`` would be a folder named ``~`` or ``$HOME`` in the
    working directory.
    """
    from .errors import InputError

    expanded = path.expanduser()
    variable = _UNEXPANDED.search(str(path))
    if variable and not expanded.exists():
        raise InputError(
            f"{option} {str(path)!r}: {variable.group(0)} was not expanded (single quotes keep it as written); "
            "write the path itself, or use double quotes so that the shell expands it"
        )
    return expanded


def _check_stays(stays: int | None) -> None:
    from .errors import InputError

    if stays is not None and stays > MAX_STAYS:
        raise InputError(
            f"--stays {stays:,}: at most {MAX_STAYS:,} ICU stays (MIMIC-IV v2.2 has 73,181; the benchmarks use "
            "100,000); give a smaller number, e.g. --stays 100000"
        )


def _available_cores() -> int:
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _check_trial_replicates(replicates: int | None) -> None:
    """As [analysis.target_trial] replicates: 10^9 would run for weeks before saying anything. Checked here,
    not by typer's max=, whose range would crowd the option's help."""
    from .errors import InputError

    if replicates is not None and replicates > 100_000:
        raise InputError(f"--replicates {replicates:,}: give a whole number from 2 to 100,000 (or leave it out)")


def _check_processes(processes: int | None) -> None:
    """Refuse ``--processes`` far above the cores: every process holds a copy of the data and adds no speed."""
    from .errors import InputError

    if processes is None:
        return
    if processes < 1:
        raise InputError(f"--processes {processes}: give a whole number >= 1 (or leave it out for all cores)")
    cores = _available_cores()
    limit = max(4 * cores, 8)
    if processes > limit:
        raise InputError(
            f"--processes {processes}: this machine has {cores} core(s); more than {limit} processes only add "
            f"memory, not speed (the results do not depend on it). Give at most {limit}, or leave it out for "
            "all cores"
        )


def _check_apart(out: Path, mimic: Path, study_file: Path) -> None:
    """Refuse an --out inside the data folder (or holding it, or the study file): --force would delete them."""
    from .errors import InputError

    here, data, study = out.absolute(), mimic.absolute(), study_file.absolute()
    with contextlib.suppress(OSError):
        here, data, study = here.resolve(), data.resolve(), study.resolve()
    if here == data or data in here.parents:
        raise InputError(
            f"--out {str(out)!r} is inside the --mimic folder {str(mimic)!r}: the report would be written among "
            "the data tables; choose a folder outside it, e.g. --out mg-study"
        )
    if here in data.parents:
        raise InputError(
            f"--mimic {str(mimic)!r} is inside --out {str(out)!r}, which --force would replace with the report; "
            "choose an --out that does not hold the data"
        )
    if here in study.parents:
        raise InputError(
            f"the study file {str(study_file)!r} is inside --out {str(out)!r}, which --force would replace with "
            "the report; keep the study file outside the output folder"
        )


def _out_option(help: str) -> Any:
    """``--out``: every command has one, each with its own default and so its own help text."""
    return typer.Option("--out", help=help)


def duckdb_settings(memory_limit: str | None, threads: int | None, engine: str = "duckdb") -> dict[str, Any] | None:
    """The DuckDB settings of ``--memory-limit`` / ``--threads``, checked; None when neither is given.

    Parameters
    ----------
    memory_limit
        A size such as ``"1GB"`` or ``"512MiB"`` (a number > 0 and a unit), or None.
    threads
        A whole number >= 1, or None.
    engine
        The run's engine: the settings are DuckDB's, so they are refused with ``"spark"``.

    Returns
    -------
    dict or None
        ``{"memory_limit": "1GB", "threads": 2}`` (only the keys given), for ``duckdb_config``.

    Raises
    ------
    InputError
        A value DuckDB would not take (checked here so the message names the option, before any data are
        read), or either option with ``engine="spark"``.
    """
    from .errors import InputError

    if memory_limit is None and threads is None:
        return None
    given = " and ".join(o for o, v in (("--memory-limit", memory_limit), ("--threads", threads)) if v is not None)
    if engine == "spark":
        # Spark's memory is fixed when its JVM starts; silently ignoring the option would be worse than refusing.
        raise InputError(
            f"{given}: DuckDB settings, not Spark's; with --engine spark use Spark's own settings "
            "(e.g. spark.driver.memory in spark-defaults.conf or PYSPARK_SUBMIT_ARGS), or leave "
            f"{given} out"
        )
    config: dict[str, Any] = {}
    if memory_limit is not None:
        match = _MEMORY_LIMIT.fullmatch(memory_limit.strip())
        if match is None or float(match.group(1)) <= 0:
            raise InputError(
                f"--memory-limit {memory_limit!r} is not a memory size; give a number > 0 and a unit, "
                "e.g. --memory-limit 1GB or 512MB (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            )
        unit = match.group(2).upper()
        size = float(match.group(1)) * (1024 if "I" in unit else 1000) ** "BKMGT".index(unit[0])
        if size > 2**50:  # DuckDB refuses past 2^64 bytes with a parser error; no machine has a pebibyte
            raise InputError(
                f"--memory-limit {memory_limit!r} is more memory than any machine has; give the RAM DuckDB may use, "
                "e.g. --memory-limit 4GB (or leave it out for 80% of RAM)"
            )
        config["memory_limit"] = f"{match.group(1)}{unit.replace('I', 'i')}"
    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads {threads}: give a whole number >= 1, e.g. --threads 2 (or leave it out)")
        cores = _available_cores()
        if threads > max(4 * cores, 8):
            # DuckDB starts every thread asked for: --threads 100000 stalled the machine instead of saying a word
            raise InputError(
                f"--threads {threads}: this machine has {cores} core(s); give at most {max(4 * cores, 8)}, "
                "e.g. --threads 2 (or leave it out for every core)"
            )
        config["threads"] = threads
    return config


def _print_error(message: str) -> None:
    # soft_wrap: long paths and keys stay on one line, so they can be copied.
    err_console.print(f"[bold red]error:[/bold red] [red]{escape(message)}[/red]", soft_wrap=True)


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    # `kill` (SIGTERM) ends a run like Ctrl-C does: the partial folder and the lock are cleaned up.
    raise KeyboardInterrupt


_OOM_ADVICE = (
    "Give it more with --memory-limit (e.g. --memory-limit 2GB; the default is 80% of RAM), use fewer --threads "
    "(each needs its own buffers), or convert the data to Parquet first (`retrocohort convert`), which needs less "
    "memory to scan."
)


@contextlib.contextmanager
def _user_errors(out: Path | None = None) -> Iterator[None]:
    """Print a RetrocohortError in red (no traceback) and exit with code 2; the same for Ctrl-C.

    ``out``: the output folder of the command, named in the message after an interruption.
    """
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    from .errors import NotEstimableError

    try:
        yield
    except NotEstimableError as exc:
        _print_error(str(exc))
        err_console.print(f"Nothing was estimated: exit code {EXIT_NOTHING_ESTIMATED}.")
        raise typer.Exit(EXIT_NOTHING_ESTIMATED) from None
    except RetrocohortError as exc:
        _print_error(str(exc))
        raise typer.Exit(EXIT_USER_ERROR) from None
    except KeyboardInterrupt:
        # Always true: the report is renamed into place whole or not at all, and the partial folder is removed.
        where = f"; nothing half-written is left in or beside {str(out)!r}" if out is not None else ""
        _print_error(f"interrupted (Ctrl-C or kill) before the command finished{where}. Run it again when ready.")
        raise typer.Exit(EXIT_USER_ERROR) from None
    except Exception as exc:
        # DuckDB past its memory_limit (a --memory-limit too small for the data, or RAM itself): a setting to
        # change, not a bug, so one paragraph rather than a traceback. Matched by name: duckdb is imported lazily.
        if type(exc).__name__ != "OutOfMemoryException":
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "out of memory"
        _print_error(f"DuckDB ran out of memory ({first}). {_OOM_ADVICE}")
        raise typer.Exit(EXIT_USER_ERROR) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _progress() -> Iterator[_Bars]:
    """A rich progress display; yields the ``progress(key, label, state)`` callback the pipeline calls."""
    with Progress(
        SpinnerColumn(finished_text="[green]done[/green]"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as progress:
        yield _Bars(progress)


class _Bars:
    """The pipeline's ``progress(key, label, state)`` callback on a rich display, and ``replicates(key, done,
    total)``: the bootstrap replicates of a target-trial stage advance that stage's bar."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, Any] = {}
        self.totals: dict[str, int] = {}

    def __call__(self, key: str, label: str, state: str) -> None:
        if state == "start":
            self.tasks[key] = self.progress.add_task(label, total=1)
        elif key in self.tasks:
            self.progress.update(self.tasks[key], completed=self.totals.get(key, 1))

    def replicates(self, key: str, done: int, total: int) -> None:
        if key in self.tasks:
            self.totals[key] = total
            self.progress.update(self.tasks[key], total=total, completed=done)


def _check_out(out: Path, force: bool) -> None:
    """Refuse an output folder that could not be written at the end, before any data are read."""
    from .study.outputs import check_output_folder

    check_output_folder(out, force)


@contextlib.contextmanager
def _locked_out(out: Path, force: bool) -> Iterator[Any]:
    """Hold the output folder's lock for the whole run (checked again once held); say what a crash left."""
    from .study.outputs import check_output_folder, output_lock

    with output_lock(out) as lock:
        check_output_folder(out, force)
        if lock.recovered is not None:
            left = lock.recovered.get("removed") or []
            dead = {key: escape(str(lock.recovered.get(key, "?"))) for key in ("run_id", "pid", "started")}
            err_console.print(
                f"[yellow]note:[/yellow] an earlier run on {escape(str(out))} did not finish "
                f"(run {dead['run_id']}, pid {dead['pid']}, started {dead['started']}); its lock was taken over"
                + (f" and its unfinished files cleaned up: {escape(', '.join(left))}" if left else ""),
                soft_wrap=True,
            )
        yield lock


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


def print_summary(result: Any, out: Path | None = None) -> None:
    """The key table in the terminal: flow, matched counts, each outcome's primary estimate.

    Every label comes from the study (arms, outcomes, dose); published estimates from
    ``[report] published``; the planted truth (synthetic data) from ``SYNTHETIC.json``.
    """
    from .report.suppression import format_display, is_small, study_disclosure
    from .study.outputs import key_table

    study = result.study
    threshold = study.report.small_cell_threshold
    # Every count as the written outputs show it (small cells and the cells that would give them back).
    disclosure = study_disclosure(result)
    counts = result.counts
    title = study.study.title + (" (SYNTHETIC DATA)" if result.synthetic else "")
    console.rule(f"[bold]{escape(title)}")

    flow = Table(title="Cohort flow", show_edge=False)
    flow.add_column("step")
    flow.add_column(units(study), justify="right")
    excluded = counts.get("indexed", 0) - counts.get("eligible", 0)
    rows = [
        ("indexed", f"with an index event ({study.index.label})", counts.get("indexed")),
        ("excluded", "excluded", excluded),
        ("eligible", "eligible", counts.get("eligible")),
        ("exposed", f"  {study.exposure.label} (exposed)", counts.get("exposed")),
        ("comparator", f"  {study.comparator.label} (comparator)", counts.get("comparator")),
        ("matched_exposed", "matched, exposed", counts.get("matched_exposed")),
        ("matched_comparator", "matched, comparator", counts.get("matched_comparator")),
    ]
    for key, label, value in rows:
        flow.add_row(escape(label), format_display(disclosure.count(key, value)) if value is not None else "—")
    dose = result.dose
    if dose is not None:
        dose_text = (
            f"{dose['mean']:.1f} ± {dose['sd']:.1f}"
            if all(isinstance(dose.get(k), float) and math.isfinite(dose[k]) for k in ("mean", "sd"))
            # the mean dose of fewer patients than the threshold is nearly one patient's dose
            and not is_small(dose.get("n", counts.get("exposed")), threshold)
            else "—"
        )
        flow.add_row(escape(f"{dose['label']}, {dose['unit']} (mean ± SD, exposed)"), dose_text)
    console.print(flow)

    # the study's conf_level (90% CI, say); the published intervals are read as papers print them, 95%
    ci = f"{100 * study.analysis.conf_level:g}% CI"
    hr = Table(title="Primary estimates (matched cohort)", show_edge=False)
    hr.add_column("outcome")
    hr.add_column("model")
    hr.add_column(f"HR ({ci})", justify="right")
    hr.add_column("p", justify="right")
    hr.add_column("published HR (95% CI)", justify="right", style="dim")
    if result.synthetic:
        hr.add_column("planted truth", justify="right", style="cyan")
    shown = set()
    for _, row in key_table(result).iterrows():
        outcome = study.outcomes[row["outcome"]]
        shown.add((row["outcome"], row["model"], "matched"))
        cells = [
            escape(by_day(outcome.label, outcome.horizon_days)),
            row["model"].replace("_", " "),
            _fmt_ratio(row["estimate"], row["lower"], row["upper"]),
            _fmt_p(row["p"]),
            _fmt_ratio(row["published"], row["published_lower"], row["published_upper"]),
        ]
        if result.synthetic:
            cells.append(f"{row['planted']:.2f}" if math.isfinite(row["planted"]) else "—")
        hr.add_row(*cells)
    console.print(hr)

    others = [e for e in result.estimates if (e.outcome, e.model, e.population) not in shown]
    if others:
        sens = Table(title="Other models and sensitivity analyses", show_edge=False)
        sens.add_column("model")
        sens.add_column(f"HR ({ci})", justify="right")
        sens.add_column("p", justify="right")
        for e in others:
            sens.add_row(escape(e.label), _fmt_ratio(e.estimate, e.lower, e.upper), _fmt_p(e.p))
        console.print(sens)
    from .report.formatting import level_text

    for sub in getattr(result, "subgroups", ()):
        note = getattr(sub, "interaction_note", "")
        interaction = "interaction not tested" if note else f"p for interaction {_fmt_p(sub.p_interaction)}"
        table = Table(title=f"Subgroups by {sub.label} ({interaction})", show_edge=False)
        table.add_column("level")
        table.add_column(f"HR ({ci})", justify="right")
        table.add_column("p", justify="right")
        for _, level in sub.levels.iterrows():
            table.add_row(
                escape(level_text(level["level"])),
                _fmt_ratio(level["estimate"], level["lower"], level["upper"]),
                _fmt_p(level["p"]),
            )
        console.print(table)
        if note:
            console.print(f"[dim]{escape(note)}[/dim]")
    if result.e_value is not None:
        console.print(
            f"E-value of the primary HR: {result.e_value['point']:.2f} (CI limit: {result.e_value['ci']:.2f}); "
            f"{escape(disclosure.text(result.e_value_method or ''))}"
        )
    from .report.text import target_trial_line

    for name in getattr(result, "target_trial", None) or {}:
        console.print(escape(target_trial_line(result, name)))
    for skipped in result.skipped:
        console.print(
            f"[yellow]skipped[/yellow] {escape(skipped.outcome)} / {escape(skipped.model)} / "
            f"{escape(skipped.population)}: {escape(disclosure.text(skipped.reason))}"
        )
    for note in result.notes:
        console.print(f"[dim]note: {escape(disclosure.text(note))}[/dim]")
    if out is not None:
        console.print(
            f"\nReport: [bold]{escape(str(out / 'report.html'))}[/bold]  (results.json, tables/, figures/ beside it)"
        )


def _run_and_write(
    source: Any,
    study: Any,
    out: Path,
    force: bool,
    engine: str,
    lock: Any,
    replicates: int | None = None,
    processes: int | None = None,
) -> Any:
    from .study.outputs import write_outputs
    from .study.pipeline import run_study

    with _progress() as progress:
        result = run_study(
            source,
            study,
            engine=engine,  # type: ignore[arg-type]
            progress=progress,
            trial_replicates=replicates,
            replicate_progress=progress.replicates,
            trial_processes=processes,
        )
        write_outputs(result, out, force=force, progress=progress, lock=lock)
    print_summary(result, out)
    _exit_when_nothing_estimated(result)
    return result


def _exit_when_nothing_estimated(result: Any) -> None:
    """Exit 3 (after the outputs are written) when the run has no answer to the study's question: its primary
    estimate (the primary outcome's adjusted model in the matched cohort) was not estimated, whatever else was.

    A secondary outcome, an unadjusted or full-cohort or IPTW model, or the emulated trial answers another
    question (or the same one less well); exiting 0 on them let a pipeline take them for the study's answer.
    """
    trials = (getattr(result, "target_trial", None) or {}).values()
    if result.primary_estimate is not None:
        return
    others = len(result.estimates) + sum(trial.bootstrap is not None for trial in trials)
    if others:
        outcome, model, population = result.primary_key
        spec = result.study.outcomes[outcome]
        reason = result.skipped_reason(outcome, model, population) or "not estimated"
        from .report.suppression import study_disclosure

        disclosure = study_disclosure(result)
        console.print(
            f"[bold yellow]No primary estimate:[/bold yellow] {escape(by_day(spec.label, spec.horizon_days))}, "
            f"{'Fine-Gray' if spec.competing else 'Cox'}, matched cohort, adjusted, could not be estimated "
            f"({escape(disclosure.text(reason))}). The study's question is not answered: the {others} other "
            "estimate(s) above (secondary outcomes, unadjusted, full-cohort or IPTW models, the emulated trial) "
            "answer other questions and do not replace it. The attrition, counts, descriptive tables and those "
            f"estimates are written. Exit code {EXIT_NOTHING_ESTIMATED}.",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_NOTHING_ESTIMATED)
    console.print(
        "[bold yellow]Nothing could be estimated:[/bold yellow] the cohort is empty or too small for every model "
        "(see the skipped models and notes above). The attrition, counts and descriptive tables are written. "
        f"Exit code {EXIT_NOTHING_ESTIMATED}.",
        soft_wrap=True,
    )
    raise typer.Exit(EXIT_NOTHING_ESTIMATED)


# --------------------------------------------------------------------------- commands


def _size_and_seed(stays: int | None, seed: int | None) -> dict[str, Any]:
    """generate_synthetic's size and seed arguments, leaving out what the user did not set."""
    return {k: v for k, v in (("stays", stays), ("seed", seed)) if v is not None}


@app.command()
def demo(
    out: Annotated[Path, _out_option("Output folder for the report.")] = Path("demo-output"),
    stays: int | None = typer.Option(
        None, "--stays", min=1, help="ICU stays to generate (default: calibrated to the published cohort)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the synthetic EHR (default: the calibrated one)."),
    force: ReplaceOutOpt = False,
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Keep the generated synthetic EHR in this folder (default: a temporary folder, deleted afterwards).",
    ),
    replicates: TrialReplicatesOpt = None,
    processes: TrialProcessesOpt = None,
    memory_limit: MemoryLimitOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Generate a synthetic EHR, run the flagship study (studies/magnesium_ckrt.toml) on DuckDB and write the report.

    Example: retrocohort demo --out demo-output --force
    """
    from .sources import MimicIV
    from .sources.synthetic import generate_synthetic
    from .study import flagship_study

    with _user_errors(out), contextlib.ExitStack() as held:
        _check_stays(stays)
        _check_processes(processes)
        _check_trial_replicates(replicates)
        out = _user_path(out, "--out")
        data = _user_path(data, "--data") if data is not None else None
        config = duckdb_settings(memory_limit, threads)
        if data is not None:
            here, there = data.absolute(), out.absolute()
            if here == there or there in here.parents or here in there.parents:
                from .errors import InputError

                raise InputError(f"--data {str(data)!r} and --out {str(out)!r} overlap; give them separate folders")
        _check_out(out, force)
        lock = held.enter_context(_locked_out(out, force))
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
            study = flagship_study()
            source = MimicIV(workdir, duckdb_config=config)
            _run_and_write(source, study, out, force, "duckdb", lock=lock, replicates=replicates, processes=processes)
        finally:
            if data is None:
                shutil.rmtree(workdir, ignore_errors=True)


@app.command()
def run(
    study_file: StudyFileArg,
    mimic: MimicOpt,
    engine: str = typer.Option("duckdb", "--engine", help="duckdb (embedded) or spark."),
    out: Annotated[Path | None, _out_option("Output folder (default: <study name>-output).")] = None,
    force: ReplaceOutOpt = False,
    replicates: TrialReplicatesOpt = None,
    processes: TrialProcessesOpt = None,
    memory_limit: MemoryLimitOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Run a study file on a MIMIC-IV folder and write the report.

    Example: retrocohort run studies/magnesium_ckrt.toml --mimic /data/mimic-iv-2.2 --out mg-study

    Example (bounded memory): retrocohort run STUDY.toml --mimic DATA --memory-limit 1GB --threads 2
    """
    from .sources import MimicIV

    with _user_errors(out), contextlib.ExitStack() as held:
        _check_engine(engine)
        _check_processes(processes)
        _check_trial_replicates(replicates)
        config = duckdb_settings(memory_limit, threads, engine)
        study_file, mimic = _user_path(study_file, "STUDY.toml"), _user_path(mimic, "--mimic")
        out = _user_path(out, "--out") if out is not None else None
        study = _load_language_study(study_file)
        # The study name is one plain path component (spec.py), so the default stays in the working directory.
        out = out if out is not None else Path(f"{study.study.name}-output")
        _check_apart(out, mimic, study_file)
        _check_out(out, force)
        _check_mimic_folder(mimic)
        lock = held.enter_context(_locked_out(out, force))
        source = MimicIV(mimic, duckdb_config=config)
        _run_and_write(source, study, out, force, engine, lock=lock, replicates=replicates, processes=processes)


@app.command()
def validate(
    study_file: StudyFileArg,
    mimic: MimicOpt,
    replicates: int = typer.Option(1000, "--replicates", help="Simulated data sets per planted effect (1-100,000)."),
    effect: list[float] | None = typer.Option(
        None,
        "--effect",
        help="Planted (s)HR, > 0; repeat for several (default: 1 and 0.7).",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Root seed (default: drawn and recorded in the output)."),
    processes: int | None = typer.Option(None, "--processes", help="Worker processes (default: all cores)."),
    engine: str = typer.Option("duckdb", "--engine", help="duckdb (embedded) or spark, for the cohort extraction."),
    out: Annotated[Path | None, _out_option("Output folder (default: <study name>-design-check).")] = None,
    force: bool = typer.Option(False, "--force", help="Replace OUT if it is an earlier output."),
    trial_replicates: int | None = typer.Option(
        None,
        "--trial-replicates",
        help="Target trial: bootstrap replicates inside each replicate (>= 2; REPLICATES x this many fits). "
        "Default: the trial's point estimates only (bias, no coverage).",
    ),
    memory_limit: MemoryLimitOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Design check: does the study's analysis recover a planted effect on this data? (plasmode simulation)

    Example: retrocohort validate studies/magnesium_ckrt.toml --mimic /data/mimic-iv-2.2 --replicates 1000
    --effect 1 --effect 0.7 --seed 1 --out mg-design-check
    """
    from .errors import InputError
    from .sources import MimicIV
    from .study.validate import (
        DEFAULT_EFFECTS,
        _check_seed,
        _processes,
        check_effects,
        check_replicates,
        write_validation_outputs,
    )
    from .study.validate import validate as run_validation

    with _user_errors(out), contextlib.ExitStack() as held:
        with _named_option("--effect", "effect"):
            effects = check_effects(effect if effect else DEFAULT_EFFECTS)
        with _named_option("--replicates", "replicates"):
            check_replicates(replicates)
        with _named_option("--seed", "seed"):
            _check_seed(seed)
        _check_processes(processes)
        _processes(processes)  # every option is checked before the output folder is locked or data are read
        if trial_replicates is not None and not 2 <= trial_replicates <= 100_000:
            raise InputError(
                f"--trial-replicates {trial_replicates}: give a whole number >= 2 and at most 100,000 (or leave it out)"
            )
        _check_engine(engine)
        config = duckdb_settings(memory_limit, threads, engine)
        study_file, mimic = _user_path(study_file, "STUDY.toml"), _user_path(mimic, "--mimic")
        out = _user_path(out, "--out") if out is not None else None
        study = _load_language_study(study_file)
        out = out if out is not None else Path(f"{study.study.name}-design-check")
        _check_apart(out, mimic, study_file)
        _check_out(out, force)
        _check_mimic_folder(mimic)
        lock = held.enter_context(_locked_out(out, force))
        result = _validate_with_progress(
            run_validation,
            study,
            MimicIV(mimic, duckdb_config=config),
            replicates,
            effects,
            seed,
            processes,
            engine,
            trial_replicates,
        )
        write_validation_outputs(result, out, force=force, lock=lock)
        print_validation_summary(result, out)
        if len(result.summary) and not (result.summary["fitted"] > 0).any():
            console.print(
                "[bold yellow]Nothing could be estimated:[/bold yellow] no estimate was fitted in any replicate. "
                f"Exit code {EXIT_NOTHING_ESTIMATED}.",
                soft_wrap=True,
            )
            raise typer.Exit(EXIT_NOTHING_ESTIMATED)


@contextlib.contextmanager
def _named_option(option: str, word: str) -> Iterator[None]:
    """Name the command-line option in a library message that names the argument ("effect 0.0: ...")."""
    from .errors import InputError

    try:
        yield
    except InputError as exc:
        text = str(exc)
        raise InputError(f"{option} {text.removeprefix(word).lstrip()}" if text.startswith(word) else text) from None


def _validate_with_progress(
    run_validation: Callable[..., Any],
    study: Any,
    mimic: Any,
    replicates: int,
    effects: tuple[float, ...],
    seed: int | None,
    processes: int | None,
    engine: str,
    trial_replicates: int | None = None,
) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn

    labels = {"cohort": "Building the cohort", "models": "Fitting the simulation models", "replicates": "Replicates"}
    with Progress(
        SpinnerColumn(finished_text="[green]done[/green]"),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    ) as progress:
        tasks: dict[str, Any] = {}

        def callback(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(labels.get(stage, stage), total=total)
            progress.update(tasks[stage], completed=done, total=total)

        return run_validation(
            study,
            mimic,
            replicates=replicates,
            effects=effects,
            seed=seed,
            processes=processes,
            progress=callback,
            engine=engine,
            trial_replicates=trial_replicates,
        )


def print_validation_summary(result: Any, out: Path | None = None) -> None:
    """One line per planted effect and estimate: truth, bias, SEs, coverage, power, skipped share."""
    summary = result.summary
    console.rule(f"[bold]Design check: {escape(result.study.study.title or result.study.study.name)}")
    populations = {"matched": "matched", "full": "full cohort", "iptw": "IPTW", "trial": "emulated trial"}
    for row in summary.itertuples():
        model = str(row.model).replace("fine_gray", "Fine-Gray").replace("cox", "Cox").replace("_", " ")
        head = f"planted {row.effect:g} | {row.outcome}, {model}, {populations.get(row.population, row.population)}"
        skipped = f"skipped {row.skipped_share:.0%}"
        if row.skipped_share > 0.5:
            skipped = f"[bold red]{skipped} (most replicates: see the warning)[/bold red]"
        if row.fitted == 0:
            console.print(f"{escape(head)}: never fitted; {skipped}", soft_wrap=True)
            continue
        # NaN reported SE: the emulated trial's point estimates carry no SE without its bootstrap
        reported = f"{row.mean_reported_se:.3f}" if row.mean_reported_se == row.mean_reported_se else "none"
        se = f"SE {row.empirical_se:.3f} empirical / {reported} reported" if row.fitted > 1 else "SE —"
        scale = "difference" if getattr(row, "scale", "log") == "difference" else "log"
        cover = (
            f"coverage {row.coverage:.1%} ± {1.96 * row.coverage_mcse:.1%}, power {row.power:.1%}"
            if row.coverage == row.coverage  # NaN: no interval (the trial's point estimates only)
            else "coverage not checked (point estimates only: --trial-replicates)"
        )
        console.print(
            f"{escape(head)}: truth {row.truth:.3f} ({row.truth_kind}), bias {row.bias_log:+.3f} ({scale}), {se}, "
            f"{cover}, {skipped}",
            soft_wrap=True,
        )
    for note in result.notes:
        console.print(f"[bold yellow]warning:[/bold yellow] {escape(note)}", soft_wrap=True)
    console.print(
        f"{result.n_replicates:,} replicates per effect, seed {result.seed}"
        + (f"; written to {escape(str(out))}" if out is not None else "")
    )


@app.command()
def synth(
    out: Annotated[Path, _out_option("Folder to write hosp/ and icu/ into.")],
    stays: int | None = typer.Option(
        None, "--stays", min=1, help="ICU stays (default: calibrated to the published cohort)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default: the calibrated one)."),
    fmt: str = typer.Option("csv.gz", "--format", help="csv.gz (as PhysioNet ships MIMIC-IV) or parquet."),
    force: bool = typer.Option(False, "--force", help="Regenerate OUT if it already holds a synthetic EHR."),
) -> None:
    """Write a synthetic EHR in the MIMIC-IV layout (hosp/, icu/, SYNTHETIC.json).

    Example: retrocohort synth --out synthetic-ehr --stays 20000 --seed 7
    """
    from .errors import InputError
    from .sources.synthetic import generate_synthetic

    with _user_errors(out):
        _check_stays(stays)
        out = _user_path(out, "--out")
        if fmt not in ("csv.gz", "parquet"):
            raise InputError(f"--format {fmt!r} is not supported; choose csv.gz or parquet")
        from .study.outputs import check_writable

        check_writable(out, inside=True)  # a file in the way, no permission, a full disk: said before any work
        if out.exists() and any(out.iterdir()):
            from .study.outputs import OutputExistsError

            if not (out / "SYNTHETIC.json").exists():
                raise OutputExistsError(f"{str(out)!r} is not empty and is not a synthetic EHR; choose another --out")
            if not force:
                raise OutputExistsError(f"{str(out)!r} already holds a synthetic EHR; pass --force to regenerate it")
        kwargs = {"fmt": fmt, **_size_and_seed(stays, seed)}
        started = time.perf_counter()
        with err_console.status("Generating the synthetic EHR..."):
            try:
                info = generate_synthetic(out, **kwargs)
            except OSError as exc:
                # a full disk or a folder that became unwritable while writing: the files are written
                # beside OUT and moved in at the end, so nothing half-written is left
                raise InputError(
                    f"could not write the synthetic EHR to {str(out)!r} ({exc.strerror or exc}); nothing was "
                    "written and an earlier EHR there is unchanged: free some space or choose another --out"
                ) from None
        console.print(
            f"Wrote {getattr(info, 'stays', '?')} ICU stays (seed {getattr(info, 'seed', '?')}) to "
            f"[bold]{escape(str(out))}[/bold] in {time.perf_counter() - started:.1f} s"
        )
        # the planted (s)HR of each shipped study, by outcome name (SYNTHETIC.json "studies")
        for name, truth in (getattr(info, "studies", None) or {}).items():
            effects = {
                k: v
                for k, v in truth.items()
                if re.fullmatch(r"s?hr_[a-z0-9_]+", k) and isinstance(v, (int, float)) and not isinstance(v, bool)
            }
            if effects:
                console.print(
                    f"Planted truth, {escape(name)}: " + ", ".join(f"{k} = {v:g}" for k, v in effects.items())
                )


def _read_every_file(files: list[Path]) -> None:
    """Read each table file to its end (a cut csv.gz shows only there), with a progress bar in bytes."""
    from rich.progress import BarColumn, DownloadColumn, TimeRemainingColumn

    from .sources.mimic_iv import read_through

    total = sum(p.stat().st_size if p.is_file() else sum(q.stat().st_size for q in p.glob("*.parquet")) for p in files)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("Reading every file to its end", total=total)
        for path in files:
            progress.update(task, description=f"Reading {escape(path.parent.name)}/{escape(path.name)}")
            read_through(path, on_bytes=lambda n: progress.advance(task, n))
    err_console.print(
        f"[green]done[/green] read {len(files)} files to their end ({total / 2**20:.1f} MB): none is cut or damaged"
    )


@app.command()
def check(
    path: Path = typer.Argument(..., metavar="PATH", help="MIMIC-IV folder (hosp/, icu/)."),
    headers_only: bool = typer.Option(
        False, "--headers-only", help="Only read the header lines (fast), not every file to its end."
    ),
    study: Path | None = typer.Option(
        None,
        "--study",
        help="A study-language file: list its concepts, their "
        "tables and the rows each finds in PATH (see `retrocohort new`).",
    ),
    count: bool = typer.Option(
        True,
        "--count/--no-count",
        help="With --study: count each concept's rows (one scan per concept) or only check tables and columns.",
    ),
    rules: bool = typer.Option(
        False,
        "--rules",
        help="Also count every data-quality rule on every row of every table (the whole-data pass; "
        "a study run counts them only on the rows it reads) and print one table of the counts.",
    ),
    memory_limit: str | None = typer.Option(
        None,
        "--memory-limit",
        help="With --study or --rules: " + MEMORY_LIMIT_HELP + " (the counts run on DuckDB).",
    ),
    threads: int | None = typer.Option(None, "--threads", help="With --study or --rules: " + THREADS_HELP),
) -> None:
    """Report which MIMIC-IV tables and columns a folder has and which study concepts they support.

    Every table file the study reads is also read to its end (with a progress bar), so that a cut or
    damaged download is found now rather than in the middle of a run. With --rules, every data-quality
    rule is then counted on every row of every table. Exits 0 when every required table and column is
    present and every file reads to its end (and, with --rules, the pass completes), 2 otherwise.

    Example: retrocohort check /data/mimic-iv-2.2

    Example: retrocohort check /data/mimic-iv-2.2 --rules --memory-limit 4GB

    Example: retrocohort check /data/mimic-iv-2.2 --study my_study.toml
    """
    from .errors import SourceError
    from .sources import MimicIV, check_source
    from .sources.mimic_iv import SCHEMA, layout_hint, table_readers

    with _user_errors():
        path = _user_path(path, "PATH")  # a quoted "~/mimic" (the shell expands only an unquoted ~)
        study = _user_path(study, "--study") if study is not None else None
    if rules and (headers_only or study is not None):
        from .errors import InputError

        with _user_errors():
            # Each combination would silently drop one half: refuse it rather than guess which was meant.
            raise InputError(
                "--rules reads every row of every table, "
                + (
                    "--headers-only only the header lines: give one of them, not both"
                    if headers_only
                    else "--study counts one study's concepts: run `check PATH --rules` and "
                    "`check PATH --study STUDY.toml` separately"
                )
            )
    if study is not None:
        _check_study_file(path, study, count, memory_limit, threads)
        return
    with _user_errors():
        if not rules and (memory_limit is not None or threads is not None):
            from .errors import InputError

            # Without a study nothing runs on DuckDB (headers and files are read directly): say so, not ignore.
            raise InputError(
                "--memory-limit and --threads apply only with --study or --rules (their counts run on DuckDB); "
                "`check PATH` alone reads the files without DuckDB, so leave them out"
            )
        # Checked before any file is read, so a mistyped value costs nothing.
        config = duckdb_settings(memory_limit, threads) if rules else None
        if not path.is_dir():
            raise SourceError(f"{str(path)!r} is not a folder; point it at the MIMIC-IV folder holding hosp/ and icu/")
        report = check_source(path)
        table = Table(title=f"MIMIC-IV tables in {escape(str(path))}", show_edge=False)
        table.add_column("table")
        table.add_column("status")
        table.add_column("missing columns")
        table.add_column("what it is; built-in concepts that read it")
        missing_required = []
        for name, rows in report.groupby("table", sort=False):
            present = rows[rows["present"]]
            absent = rows[~rows["present"]]
            table_absent = rows["file"].eq("").all()
            required = bool(rows["required"].any())
            # Study-neutral: what the table holds and which built-ins read it (a study's own concepts
            # are listed by `check --study`).
            readers = table_readers(str(name))
            supports = SCHEMA[str(name)].needed_by + (f"; built-ins: {', '.join(readers)}" if readers else "")
            if table_absent:
                status = (
                    "[red]missing (every study reads it)[/red]"
                    if required
                    else "[yellow]absent (needed only by studies that read it)[/yellow]"
                )
            elif absent.empty:
                status = "[green]present[/green]"
            else:
                status = "[yellow]present, columns missing[/yellow]"
            missing_required += [f"{name}.{c}" for c in absent.loc[absent["required"], "column"]]
            table.add_row(
                escape(str(name)),
                status,
                escape(", ".join(absent["column"])) if not table_absent else "all",
                escape(supports) if len(present) or not table_absent else f"[dim]{escape(supports)}[/dim]",
            )
        console.print(table)
        if missing_required:
            raise SourceError(
                f"{len(missing_required)} required column(s) missing: {', '.join(missing_required[:12])}"
                + (" ..." if len(missing_required) > 12 else "")
                + "; no study can run on this folder until they are added"
                + layout_hint(path)
            )
        if not headers_only:
            _read_every_file([Path(f) for f in dict.fromkeys(report["file"]) if f])
        # The same validation a run starts with (e.g. a Parquet column stored with the wrong type).
        MimicIV(path).validate()
        console.print(
            "[green]Every required table and column is present.[/green] Tables marked absent are needed only "
            "by studies that read them: `retrocohort check DATA --study STUDY.toml` checks one study."
        )
        if rules:
            _print_rule_counts(path, config)


def _print_rule_counts(path: Path, config: dict[str, Any] | None) -> None:
    """`check PATH --rules`: count every data-quality rule on every row of every table; print one table.

    Raises InputError (the named file and key) when a key occurs on several differing rows, as a run does.
    Only counts are printed, never a row's identifier, and no file is written.
    """
    from .sources import MimicIV

    conn = MimicIV(path).connect(duckdb_config=config)
    try:
        with err_console.status("Counting the data-quality rules on every row of every table..."), conn.errors():
            checks = conn.data_checks()
    finally:
        conn.close()
    table = Table(title=f"Data-quality rules on every row of every table in {escape(str(path))}", show_edge=False)
    for column in ("table", "rule", "action", "count"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for row in checks.table.to_dict("records"):
        count = int(row["count"])
        # The rows-read line is the denominator, not a finding: plain; a rule that found something: yellow.
        found = count > 0 and not str(row["check"]).endswith("_rows_read")
        shown = f"[yellow]{count:,}[/yellow]" if found else f"{count:,}"
        table.add_row(escape(str(row["table"])), escape(str(row["rule"])), escape(str(row["action"])), shown)
    console.print(table)
    console.print(
        "Every row of every table was read for these counts. A study run counts the same rules only on the rows "
        "it reads, so the row counts in a run's report (tables/data_checks.csv) can be smaller; every run "
        "applies the same rules (see docs/data-checks.md)."
    )


# --------------------------------------------------------------------------- new, check --study, convert


@app.command()
def new(
    study_file: Path = typer.Argument(..., metavar="STUDY.toml", help="The study file to write."),
    force: bool = typer.Option(False, "--force", help="Replace STUDY.toml if it exists."),
) -> None:
    """Write a commented template study file to fill in (see docs/study-language.md).

    Every place to decide is marked '<fill: ... | e.g. ...>'; `retrocohort check DATA --study STUDY.toml`
    says which are left and, once filled, what the data holds for each concept.

    Example: retrocohort new my_study.toml
    """
    from .errors import InputError
    from .spec.template import placeholders, study_name_for, template_text

    with _user_errors():
        study_file = _user_path(study_file, "STUDY.toml")
        if study_file.suffix.lower() != ".toml":
            raise InputError(f"{str(study_file)!r}: a study file ends in .toml (e.g. my_study.toml)")
        if study_file.exists() and not force:
            raise InputError(f"{str(study_file)!r} already exists; choose another name or pass --force to replace it")
        if study_file.exists() and not study_file.is_file():
            raise InputError(f"{str(study_file)!r} is not a file; choose another name")
        if study_file.parent.exists() and not study_file.parent.is_dir():
            raise InputError(f"{str(study_file.parent)!r} is a file, not a folder; choose another path")
        if not study_file.parent.is_dir():
            raise InputError(
                f"folder {str(study_file.parent)!r} does not exist; create it first or choose another path"
            )
        text = template_text(study_name_for(study_file.name), study_file.name)
        try:
            study_file.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{str(study_file)!r} cannot be written ({exc.strerror or exc})") from None
        blanks = placeholders(text)
        console.print(
            f"Wrote [bold]{escape(str(study_file))}[/bold]: fill the {len(blanks)} places marked "
            "'<fill: ...>' (each gives an example), then:"
        )
        console.print(f"  retrocohort check DATA --study {escape(str(study_file))}")
        console.print(f"  retrocohort run {escape(str(study_file))} --mimic DATA --out OUT")


def _check_study_file(
    path: Path, study_file: Path, count: bool = True, memory_limit: str | None = None, threads: int | None = None
) -> None:
    """`check PATH --study STUDY.toml`: the study's concepts, their tables and the rows each finds.

    Exits 2 when a concept's table or column is absent or a file does not parse; a concept that finds
    no rows is a warning (exit 0), as it is a zero in the attrition of a run.
    """
    from .cohort.inventory import study_inventory
    from .errors import SourceError

    with _user_errors():
        config = duckdb_settings(memory_limit, threads)
        study = _load_language_study(study_file)
        if not path.is_dir():
            raise SourceError(f"{str(path)!r} is not a folder; point it at the MIMIC-IV folder holding hosp/ and icu/")
        threshold = study.report.small_cell_threshold
        waiting = "Counting the rows of each concept..." if count else "Reading the table headers..."
        with err_console.status(waiting) as spinner:

            def counted(concept: str, done: int, total: int) -> None:
                spinner.update(f"Counted {done} of {total} concepts (last: {escape(concept)})...")

            inv = study_inventory(study, path, count=count, duckdb_config=config, progress=counted)

        tables = Table(title=f"Tables of {escape(study.study.name)} in {escape(str(path))}", show_edge=False)
        for column in ("table", "status", "missing columns", "used by"):
            tables.add_column(column)
        for row in inv.tables.to_dict("records"):
            if not row["present"]:
                status = "[red]absent[/red]"
            elif row["missing_columns"]:
                status = "[yellow]columns missing[/yellow]"
            else:
                status = f"[green]present[/green] ({escape(row['format'])})"
            tables.add_row(escape(row["table"]), status, escape(row["missing_columns"]), escape(row["used_by"]))
        console.print(tables)

        concepts = Table(title="Concepts of the study", show_edge=False)
        for column, justify in (
            ("concept", "left"),
            ("kind", "left"),
            ("tables", "left"),
            ("rows", "right"),
            ("patients", "right"),
            ("status", "left"),
        ):
            concepts.add_column(column, justify=justify)  # type: ignore[arg-type]
        colour = {"found": "green", "no rows": "yellow", "not counted": "dim"}
        for row in inv.concepts.to_dict("records"):
            shown = [_fmt_count(None if _isna(row[k]) else int(row[k]), threshold) for k in ("rows", "patients")]
            status = row["status"]
            concepts.add_row(
                escape(row["concept"]),
                row["kind"],
                escape(row["tables"]),
                *shown,
                f"[{colour.get(status, 'red')}]{escape(status)}[/{colour.get(status, 'red')}]",
            )
        console.print(concepts)
        for note in inv.notes:
            console.print(f"[yellow]note:[/yellow] {escape(note)}")
        blocking = inv.concepts[inv.concepts["status"].isin(["table absent", "column absent", "unreadable"])]
        empty = inv.concepts[inv.concepts["status"] == "no rows"]
        for row in empty.to_dict("records"):
            console.print(f"[yellow]warning:[/yellow] concept {escape(row['concept'])!s}: {escape(row['message'])}")
        out_of_memory = [r for r in blocking.to_dict("records") if "Out of Memory" in str(r["message"])]
        if out_of_memory:
            # a --memory-limit too small to count, not a table the data lacks: one paragraph, as a run says it
            first = str(out_of_memory[0]["message"]).strip().splitlines()[0]
            raise SourceError(
                f"DuckDB ran out of memory while counting {len(out_of_memory)} concept(s) ({first}). {_OOM_ADVICE}"
            )
        if len(blocking):
            raise SourceError(
                f"{len(blocking)} concept(s) of {study_file} cannot be read from {path}:\n  "
                + "\n  ".join(f"{r['concept']}: {r['message']}" for r in blocking.to_dict("records"))
            )
        # Blocking absences raised above, so a table still absent is one its concepts read only when present:
        # the final line must say so rather than claim every table is there.
        absent = [r for r in inv.tables.to_dict("records") if not r["present"]]
        builder = [r["table"] for r in absent if r["used_by"] == "(cohort builder)"]
        optional_absent = [r for r in absent if r["used_by"] != "(cohort builder)"]
        if builder:  # already in a note above; the last line must not call the folder complete
            # The study cannot run without it, so a script must not read this check as passed (exit 2).
            raise SourceError(
                f"the study's concepts can be read, but {', '.join(builder)} (read by every study) is absent "
                f"from {path}: `retrocohort run` cannot run {study_file} until it is copied into the folder"
            )
        if not optional_absent:
            console.print(
                f"[green]Every table and column the study's concepts read is present in {escape(str(path))}.[/green]"
            )
            return
        lost = "; ".join(
            _optional_loss(concept.strip(), row["table"])
            for row in optional_absent
            for concept in row["used_by"].split(",")
        )
        console.print(
            f"[green]Every table and column the study needs is present in {escape(str(path))}[/green]; "
            f"[yellow]optional tables absent: {escape(', '.join(r['table'] for r in optional_absent))}[/yellow] "
            f"(what is lost: {escape(lost)})."
        )


def _optional_loss(concept: str, table: str) -> str:
    """What ``concept`` loses without ``table`` (which it reads only when present), in a few words."""
    from .spec.catalogue import OPTIONAL_TABLE_LOSSES

    if (concept, table) in OPTIONAL_TABLE_LOSSES:
        return OPTIONAL_TABLE_LOSSES[(concept, table)]
    if table == "hosp/emar_detail":
        return f"the route, dose and unit of {concept}'s administrations"
    return f"what {concept} reads from {table} when it is present"


def _load_language_study(study_file: Path) -> Any:
    """The study of a study-language file; a file of the old format gets directions, not key errors."""
    from .errors import StudySpecError
    from .spec import load_study_file

    try:
        return load_study_file(study_file)
    except StudySpecError:
        if _is_legacy_study(study_file):
            raise StudySpecError(
                f"{study_file} is in the old study-file format ([cohort], [propensity], [models]), which "
                "retrocohort no longer reads: rewrite it in the study language (docs/study-language.md; "
                "studies/magnesium_ckrt.toml is the flagship written in it, `retrocohort new` writes a "
                "template)"
            ) from None
        raise


def _is_legacy_study(study_file: Path) -> bool:
    """Whether the file is a study of the old format (top-level [cohort] / [models], no [index])."""
    import tomllib

    if not study_file.is_file() or study_file.stat().st_size > 1_000_000:
        return False  # a FIFO would block the read; load_study_file has said what is wrong
    try:
        data = tomllib.loads(study_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return "index" not in data and bool({"cohort", "models"} & set(data))


def _isna(value: Any) -> bool:
    """True for None / NaN / pandas NA (a count that was not made)."""
    import pandas as pd

    return bool(pd.isna(value))


@app.command()
def convert(
    mimic_dir: Path = typer.Argument(..., metavar="MIMIC_DIR", help="MIMIC-IV folder with hosp/ and icu/ (csv.gz)."),
    parquet_dir: Path = typer.Argument(..., metavar="PARQUET_DIR", help="Folder to write the Parquet copy into."),
    table: list[str] | None = typer.Option(
        None,
        "--table",
        help="Convert only this table (repeatable), e.g. "
        "--table icu/chartevents --table labevents. Default: every table.",
    ),
    force: bool = typer.Option(False, "--force", help="Replace tables already converted in PARQUET_DIR."),
    memory_limit: str | None = typer.Option(None, "--memory-limit", help="DuckDB memory limit, e.g. 2GB."),
) -> None:
    """Convert a MIMIC-IV folder (csv.gz) to typed Parquet; `run` and `check` read either.

    Each table is written under a temporary name and renamed when complete and its row count
    checked, so an interrupted conversion leaves no half table; rerun to finish.

    Example: retrocohort convert /data/mimic-iv-2.2 /data/mimic-iv-2.2-parquet
    """
    from rich.progress import BarColumn, DownloadColumn, TimeRemainingColumn

    from .sources.convert import convert_mimic

    with _user_errors():
        started = time.perf_counter()
        with Progress(
            TextColumn("{task.description:<26}"),
            BarColumn(),
            DownloadColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=False,
        ) as bar:
            tasks: dict[str, Any] = {}

            def progress(name: str, done: int, total: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=max(total, 1))
                bar.update(tasks[name], completed=done)

            config = duckdb_settings(memory_limit, None)
            mimic_dir, parquet_dir = _user_path(mimic_dir, "MIMIC_DIR"), _user_path(parquet_dir, "PARQUET_DIR")
            _check_parquet_dir(mimic_dir, parquet_dir)
            try:
                result = convert_mimic(
                    mimic_dir, parquet_dir, table or None, force=force, progress=progress, duckdb_config=config
                )
            except KeyboardInterrupt:
                err_console.print(
                    "[yellow]interrupted:[/yellow] the table being written was removed; tables finished before "
                    "are kept. Rerun with --force (or --table for the rest) to finish."
                )
                raise typer.Exit(EXIT_USER_ERROR) from None  # as every command's Ctrl-C (docs/cli.md)
        summary = Table(title=f"Parquet copy in {escape(str(result.out))}", show_edge=False)
        for column, justify in (
            ("table", "left"),
            ("rows", "right"),
            ("source MiB", "right"),
            ("Parquet MiB", "right"),
            ("seconds", "right"),
        ):
            summary.add_column(column, justify=justify)  # type: ignore[arg-type]
        for t in result.tables:
            summary.add_row(
                escape(t.table) + (" (copied)" if t.action == "copied" else ""),
                f"{t.rows:,}",
                f"{t.source_bytes / 2**20:,.1f}",
                f"{t.target_bytes / 2**20:,.1f}",
                f"{t.seconds:.1f}",
            )
        console.print(summary)
        for note in result.notes:
            console.print(f"[dim]note: {escape(note)}[/dim]")
        console.print(
            f"Converted {len(result.tables)} table(s) in {time.perf_counter() - started:.1f} s; "
            f"pass [bold]{escape(str(result.out))}[/bold] wherever a MIMIC-IV folder is asked for."
        )


#: What a Parquet copy folder may already hold: an earlier (partial) copy, resumed with --table or --force.
_PARQUET_DIR_OWN = frozenset({"hosp", "icu", "SYNTHETIC.json"})


def _check_parquet_dir(mimic_dir: Path, parquet_dir: Path) -> None:
    """Refuse a PARQUET_DIR that cannot be written, or a folder that holds other things, before any work.

    convert writes into PARQUET_DIR (it deletes nothing), but a folder of unrelated files is most likely a
    typo (``convert /data/mimic ~``); an earlier copy (hosp/, icu/, SYNTHETIC.json) is resumed.
    """
    from .errors import InputError
    from .study.outputs import OutputExistsError, OutputNotWritableError, check_writable

    if parquet_dir.exists() and not parquet_dir.is_dir():
        return  # convert_mimic says so in its own words
    if parquet_dir.is_dir() and mimic_dir.exists() and parquet_dir.resolve() == mimic_dir.resolve():
        return  # convert_mimic refuses the MIMIC-IV folder itself with the reason
    try:
        check_writable(parquet_dir, inside=True)
    except (OutputExistsError, OutputNotWritableError) as exc:
        raise InputError(str(exc).replace("an --out", "a PARQUET_DIR").replace("--out", "PARQUET_DIR")) from None
    if parquet_dir.is_dir():
        foreign = sorted(p.name for p in parquet_dir.iterdir() if p.name not in _PARQUET_DIR_OWN)
        foreign = [name for name in foreign if not name.startswith(".")]
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise InputError(
                f"PARQUET_DIR {str(parquet_dir)!r} holds files that are not a Parquet copy of MIMIC-IV ({shown}); "
                "choose an empty or new folder (a copy goes into hosp/ and icu/ of its own folder)"
            )


def main() -> None:  # pragma: no cover - console entry point alias
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
