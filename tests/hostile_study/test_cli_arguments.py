"""Hostile command-line arguments: every command with missing, extra, duplicated and nonsense arguments.

Each case ends in exit 2 with a message that names the argument and what to write (click's own usage errors
included), never a traceback, and before any data are read or any output folder is made. None of them needs
data: the folders are empty or the small package EHR is only named, not read.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from .conftest import invoke

ROOT = Path(__file__).resolve().parents[2]
FLAGSHIP = ROOT / "studies" / "magnesium_ckrt.toml"


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder: the flagship study, a binary file, a huge file, a FIFO, a folder, an earlier output."""
    folder = tmp_path_factory.mktemp("hostile_args")
    shutil.copy(FLAGSHIP, folder / "study.toml")
    (folder / "binary.toml").write_bytes(bytes(range(256)) * 4)
    with (folder / "huge.toml").open("w") as handle:  # 2 MiB of valid-looking TOML
        handle.write("[study]\n")
        handle.write("# padding\n" * 210_000)
    os.mkfifo(folder / "fifo.toml")
    (folder / "a_folder.toml").mkdir()
    earlier = folder / "earlier-output"
    earlier.mkdir()
    (earlier / "results.json").write_text("{}")
    shutil.copy(FLAGSHIP, earlier / "study.toml")
    (folder / "mimic" / "hosp").mkdir(parents=True)
    (folder / "mimic" / "icu").mkdir()
    return folder


def commands() -> list[str]:
    code, text = invoke("--help")
    assert code == 0
    return re.findall(r"\b(demo|run|validate|synth|check|new|convert)\b", text)


def test_help_lists_the_commands_tested_here():
    assert set(commands()) == {"demo", "run", "validate", "synth", "check", "new", "convert"}


def case(args: str, words: list[str]) -> tuple[str, list[str]]:
    return args, words


#: (arguments with S = the study, M = an empty MIMIC-shaped folder, P = the working folder; words the message
#: must hold). Each must exit 2.
CASES: list[tuple[str, list[str]]] = [
    # missing and extra arguments, unknown options
    case("run", ["Missing argument", "STUDY.toml"]),
    case("run S", ["Missing option", "--mimic"]),
    case("validate S", ["Missing option", "--mimic"]),
    case("synth", ["Missing option", "--out"]),
    case("check", ["Missing argument", "PATH"]),
    case("new", ["Missing argument", "STUDY.toml"]),
    case("convert M", ["Missing argument", "PARQUET_DIR"]),
    case("check M extra", ["unexpected extra argument", "extra"]),
    case("run S S --mimic M", ["unexpected extra argument"]),
    case("run S --mimic M --bogus", ["No such option", "--bogus"]),
    case("nosuchcommand", ["No such command", "nosuchcommand"]),
    # duplicated options (click would keep the last without a word)
    case("run S --mimic M --mimic P", ["--mimic is given 2 times", "give it once"]),
    case("run S --mimic M --out a --out=b", ["--out is given 2 times", "--out a, --out b"]),
    case("check M --study S --study S", ["--study is given 2 times"]),
    case("check M --study S --count --no-count", ["--count is given 2 times", "--count, --no-count"]),
    case("validate S --mimic M --seed 1 --seed 2", ["--seed is given 2 times"]),
    case("synth --out a --out b", ["--out is given 2 times"]),
    case("convert M P/pq --memory-limit 1GB --memory-limit 2GB", ["--memory-limit is given 2 times"]),
    case("new P/x.toml --force --force", ["--force is given 2 times"]),
    case("demo --out a --stays 300 --stays 400", ["--stays is given 2 times"]),
    # an option where a value should be
    case("run S --mimic M --out --force", ["--out needs a value", "--force follows it", "--out my-study"]),
    case("run S --mimic --out o", ["--mimic needs a value", "--mimic /data/mimic-iv-2.2"]),
    case("run S --mimic", ["--mimic", "requires an argument"]),
    # the study path: a folder, absent, binary, huge, a FIFO, unexpanded $VAR
    case("run P/a_folder.toml --mimic M", ["is a folder", "pass the study's .toml file"]),
    case("run P/absent.toml --mimic M", ["not found", "give the path of a .toml study file"]),
    case("run P/binary.toml --mimic M", ["is a binary file", "pass the study's .toml file"]),
    case("run P/huge.toml --mimic M", ["MiB", "a study file is a few KiB", "at most 1 MiB"]),
    case("run P/fifo.toml --mimic M", ["not a regular file (a pipe or a device)", "save the study as a .toml file"]),
    case("check M --study P/fifo.toml --no-count", ["not a regular file"]),
    case("validate P/fifo.toml --mimic M", ["not a regular file"]),
    case("run $HOME/nothing-here.toml --mimic M", ["STUDY.toml", "$HOME was not expanded", "write the path itself"]),
    case("run S --mimic M --out $HOME/x", ["--out", "$HOME was not expanded"]),
    case("check ${NO_SUCH_VAR}/mimic", ["PATH", "${NO_SUCH_VAR} was not expanded"]),
    # --out against the data, the study and an earlier output
    case("run S --mimic M --out M", ["--out", "is inside the --mimic folder", "choose a folder outside it"]),
    case("run S --mimic M --out M/hosp/results", ["is inside the --mimic folder"]),
    case("run S --mimic P/mimic --out P --force", ["--mimic", "is inside --out", "--force would replace"]),
    case("run S --mimic M --out S", ["--out", "exists and is not a folder", "choose another --out"]),
    case(
        "run P/earlier-output/study.toml --mimic M --out P/earlier-output --force",
        ["the study file", "is inside --out", "keep the study file outside the output folder"],
    ),
    case("validate S --mimic M --out M/check", ["is inside the --mimic folder"]),
    # numbers
    case("run S --mimic M --replicates 0", ["--replicates", "greater than or equal to 2"]),
    case("run S --mimic M --replicates -1", ["--replicates", "greater than or equal to 2"]),
    case("run S --mimic M --replicates 1e9", ["--replicates", "valid integer"]),
    case("run S --mimic M --replicates abc", ["--replicates", "valid integer"]),
    case("run S --mimic M --replicates 1000000000", ["--replicates 1,000,000,000", "from 2 to 100,000"]),
    case("validate S --mimic M --replicates 0", ["--replicates 0", "give a whole number from 1 to 100,000"]),
    case("validate S --mimic M --replicates -1", ["--replicates -1", "give a whole number"]),
    case("validate S --mimic M --replicates 1000000000", ["--replicates 1000000000", "100,000"]),
    case("validate S --mimic M --replicates abc", ["--replicates", "valid integer"]),
    case("validate S --mimic M --trial-replicates 1", ["--trial-replicates 1", ">= 2"]),
    case("validate S --mimic M --trial-replicates 1000000000", ["--trial-replicates", "100,000"]),
    case("validate S --mimic M --effect 0", ["--effect 0", "finite number > 0", "--effect 0.7"]),
    case("validate S --mimic M --effect -1", ["--effect -1", "finite number > 0"]),
    case("validate S --mimic M --effect nan", ["--effect nan", "finite number > 0"]),
    case("validate S --mimic M --effect inf", ["--effect inf", "finite number > 0"]),
    case("validate S --mimic M --effect abc", ["--effect", "valid number"]),
    case("validate S --mimic M --seed abc", ["--seed", "valid integer"]),
    case("validate S --mimic M --seed -1", ["--seed -1", "give a whole number >= 0"]),
    case("synth --out P/s --seed abc", ["--seed", "valid integer"]),
    case("demo --out P/d --seed abc", ["--seed", "valid integer"]),
    case("synth --out P/s --stays 0", ["--stays", "greater than or equal to 1"]),
    case("synth --out P/s --stays 1000000000", ["--stays 1,000,000,000", "at most 1,000,000", "--stays 100000"]),
    case("demo --out P/d --stays 1000000000", ["--stays 1,000,000,000", "at most 1,000,000"]),
    case("run S --mimic M --processes 0", ["--processes", "greater than or equal to 1"]),
    case("run S --mimic M --processes -1", ["--processes", "greater than or equal to 1"]),
    case("run S --mimic M --processes 1000", ["--processes 1000", "core(s)", "Give at most"]),
    case("validate S --mimic M --processes 0", ["--processes 0", "give a whole number >= 1"]),
    case("validate S --mimic M --processes 1000", ["--processes 1000", "Give at most"]),
    case("demo --out P/d --processes 1000", ["--processes 1000", "Give at most"]),
    case("demo --out P/d --replicates 1000000", ["--replicates 1,000,000", "from 2 to 100,000"]),
    # DuckDB settings and engines
    case("run S --mimic M --memory-limit lots", ["--memory-limit 'lots'", "e.g. --memory-limit 1GB"]),
    case("run S --mimic M --memory-limit 0GB", ["--memory-limit '0GB'", "a number > 0"]),
    case("run S --mimic M --memory-limit -1GB", ["--memory-limit '-1GB'", "a number > 0"]),
    case("check M --rules --memory-limit 12 parsecs", ["unexpected extra argument"]),
    case("check M --rules --memory-limit 12parsecs", ["--memory-limit '12parsecs'", "e.g. --memory-limit 1GB"]),
    case("run S --mimic M --memory-limit 99999999999TB", ["--memory-limit '99999999999TB'", "more memory than any"]),
    case("check M --study S --memory-limit 2000TiB", ["--memory-limit '2000TiB'", "e.g. --memory-limit 4GB"]),
    case("convert M P/pq --memory-limit x", ["--memory-limit 'x'"]),
    case("demo --out P/d --memory-limit x", ["--memory-limit 'x'"]),
    case("run S --mimic M --threads 0", ["--threads 0", "give a whole number >= 1"]),
    case("run S --mimic M --threads -4", ["--threads -4", "give a whole number >= 1"]),
    case("check M --study S --threads 0", ["--threads 0"]),
    case("check M --study S --threads 100000", ["--threads 100000", "core(s)", "give at most"]),
    case("run S --mimic M --threads 100000", ["--threads 100000", "give at most"]),
    case("check M --threads 2", ["--memory-limit and --threads apply only with --study or --rules"]),
    case("run S --mimic M --engine bogus", ["--engine 'bogus' is not supported", "choose duckdb or spark"]),
    case("run S --mimic M --engine DuckDB", ["--engine 'DuckDB' is not supported"]),
    case("validate S --mimic M --engine bogus", ["--engine 'bogus'"]),
    case("run S --mimic M --engine spark --memory-limit 1GB", ["DuckDB settings, not Spark's"]),
    # other commands' paths
    case("synth --out S", ["exists and is not a folder"]),
    case("synth --out P/earlier-output", ["is not empty and is not a synthetic EHR", "choose another --out"]),
    case("synth --out P/s --format csv", ["--format 'csv' is not supported", "csv.gz or parquet"]),
    case("new P/a_folder.toml", ["already exists"]),
    case("new P/x.txt", ["a study file ends in .toml"]),
    case("new P/absent-folder/x.toml", ["folder", "does not exist", "create it first"]),
    case("new S", ["already exists", "--force"]),
    case("convert M M", ["no MIMIC-IV tables found", "hosp/ and icu/"]),
    case("convert P/absent P/pq", ["not found", "hosp/ and icu/"]),
    case("check P/absent", ["is not a folder", "hosp/ and icu/"]),
    case("check S", ["is not a folder"]),
    case("check M --rules --headers-only", ["--rules", "--headers-only", "give one of them"]),
    case("run S --mimic S", ["--mimic", "is a file", "point it at the MIMIC-IV folder"]),
    case("run S --mimic P/absent", ["--mimic", "is not a folder"]),
]


def expand(args: str, place: Path) -> list[str]:
    out = []
    for token in args.split():
        token = re.sub(r"(?<![A-Za-z$])M(?=/|$)", str(place / "mimic"), token)
        token = re.sub(r"(?<![A-Za-z$])P(?=/|$)", str(place), token)
        out.append(str(place / "study.toml") if token == "S" else token)
    return out


@pytest.mark.parametrize(("args", "words"), CASES, ids=[c[0] for c in CASES])
def test_a_hostile_argument_exits_2_naming_the_argument(args, words, place, monkeypatch):
    monkeypatch.chdir(place)
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)
    before = sorted(p.name for p in place.iterdir())
    code, text = invoke(*expand(args, place))
    assert code == 2, text
    for word in words:
        assert word in text, (word, text)
    # refused before any work: nothing written beside the inputs, the earlier output and the study untouched
    assert sorted(p.name for p in place.iterdir()) == before
    assert (place / "earlier-output" / "study.toml").is_file() and (place / "study.toml").is_file()


def test_every_command_has_hostile_cases():
    used = {c[0].split()[0] for c in CASES}
    assert set(commands()) <= used


def test_a_quoted_tilde_is_the_home_folder(place, monkeypatch, tmp_path):
    # the shell expands an unquoted ~; a quoted "~/..." reaches us as written and is expanded here
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(FLAGSHIP, home / "study.toml")
    monkeypatch.setenv("HOME", str(home))
    code, text = invoke("run", "~/study.toml", "--mimic", "~/no-such-mimic")
    assert code == 2 and f"--mimic '{home / 'no-such-mimic'}' is not a folder" in text, text
    code, text = invoke("run", "~/absent.toml", "--mimic", place / "mimic")
    assert code == 2 and str(home / "absent.toml") in text, text
    code, text = invoke("new", "~/new.toml")
    assert code == 0 and (home / "new.toml").is_file(), text
    assert not (place / "~").exists() and not Path("~").exists()


def test_non_ascii_paths_work(ehr, tmp_path):
    folder = tmp_path / "études 研究"
    folder.mkdir()
    study = folder / "étude_magnésium.toml"
    shutil.copy(FLAGSHIP, study)
    data = tmp_path / "données"
    data.symlink_to(ehr, target_is_directory=True)
    code, text = invoke("check", data, "--study", study, "--no-count")
    assert code == 0, text
    assert "Every table and column the study's concepts read is present" in text
    code, text = invoke("new", folder / "nouvelle_étude.toml")
    assert code == 0 and (folder / "nouvelle_étude.toml").is_file(), text


def test_a_value_that_looks_like_an_option_but_is_not_one_is_a_value(place, monkeypatch):
    # only the command's own options count as "an option follows": a folder named "-x" stays a folder
    monkeypatch.chdir(place)
    code, text = invoke("run", place / "study.toml", "--mimic", "-x")
    assert code == 2 and "--mimic '-x' is not a folder" in text, text


def test_a_memory_limit_too_small_to_count_is_one_paragraph_naming_the_option(ehr):
    # DuckDB's out-of-memory error per concept was listed as "cannot be read", with SQL advice (SET memory_limit)
    code, text = invoke("check", ehr, "--study", FLAGSHIP, "--memory-limit", "1B")
    assert code == 2, text
    assert "DuckDB ran out of memory while counting" in text and "--memory-limit 2GB" in text
    assert "cannot be read" not in text
