"""Read a study file: TOML -> validated, frozen :class:`~retrocohort.spec.study.Study`.

Every error is a :class:`~retrocohort.errors.StudySpecError` whose lines each
name the file, the line, the key, what is allowed and, for a misspelt name,
the closest valid one. All problems of a file are reported together.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import StudySpecError
from .study import _NAME_RULE, Study, study_problems
from .template import unfilled
from .window import WINDOW_SYNTAX, Window

#: Largest study file read: far above any design (the flagship is 8 KiB), far below a data file passed by mistake.
MAX_STUDY_BYTES = 1 << 20


def load_study_file(path: str | Path) -> Study:
    """Read and validate a study file.

    Parameters
    ----------
    path
        A TOML file written in the study language (``docs/study-language.md``).

    Returns
    -------
    Study
        Frozen; ``source_text`` holds the file text (its SHA-256 is ``fingerprint``).

    Raises
    ------
    StudySpecError
        The file is missing or unreadable, not TOML, or a key, value or name is wrong.
    """
    path = Path(path)
    if path.is_dir():
        raise StudySpecError(f"study file {str(path)!r} is a folder; pass the study's .toml file inside it")
    if path.exists() and not path.is_file():
        # a FIFO or a device: reading it would wait forever (or never end)
        raise StudySpecError(
            f"study file {str(path)!r} is not a regular file (a pipe or a device); save the study as a .toml file "
            "and pass its path"
        )
    if not path.is_file():
        raise StudySpecError(f"study file {str(path)!r} not found (give the path of a .toml study file)")
    size = path.stat().st_size
    if size > MAX_STUDY_BYTES:
        raise StudySpecError(
            f"study file {str(path)!r} is {size / 2**20:.1f} MiB; a study file is a few KiB of TOML (the flagship is "
            f"8 KiB), at most {MAX_STUDY_BYTES // 2**20} MiB: pass the study's .toml file, not a data file"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StudySpecError(
            f"study file {str(path)!r} cannot be read ({exc.strerror or exc}); check its permissions"
        ) from None
    if b"\x00" in data:
        raise StudySpecError(
            f"study file {str(path)!r} is a binary file, not a TOML text file; pass the study's .toml file "
            "(e.g. studies/magnesium_ckrt.toml)"
        )
    try:
        text = data.decode("utf-8-sig")  # a BOM from a Windows editor is not TOML
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise StudySpecError(
            f"study file {str(path)!r}, line {line}: byte 0x{data[exc.start]:02x} is not UTF-8 text; TOML files "
            "are UTF-8: save the file as UTF-8 in your editor (or convert it, e.g. iconv -f latin1 -t utf-8)"
        ) from None
    return parse_study_text(text, where=str(path))


def parse_study_text(text: str, where: str = "study") -> Study:
    """Validate the text of a study file (``where`` names it in messages)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudySpecError(
            f"{where}: not valid TOML: {exc}{_toml_line(text, str(exc))}{_toml_hint(str(exc))}"
        ) from None
    return parse_study(raw, text=text, where=where)


def parse_study(raw: dict[str, Any], text: str | None = None, where: str = "study") -> Study:
    """Validate an already-parsed study mapping; ``text`` locates lines for the messages."""
    lines = key_lines(text or "")
    # A template from `retrocohort new` with places still to fill: say which, not a type error about them.
    blanks = unfilled(raw)
    if blanks:
        found = [f"{_at(where, lines, loc)}: {_key(loc)}still a placeholder; write {hint}" for loc, hint in blanks]
        raise StudySpecError(f"{len(blanks)} place(s) of the template still to fill in:\n  " + "\n  ".join(found))
    try:
        study = Study.model_validate(raw)
    except ValidationError as exc:
        raise StudySpecError(_explain(exc, lines, where)) from None
    problems = study_problems(study)
    if problems:
        found = [f"{_at(where, lines, loc)}: {_key(loc)}{msg}" for loc, msg in problems]
        raise StudySpecError("invalid study file:\n  " + "\n  ".join(found))
    return study.model_copy(update={"source_text": text, "source_path": where if text is not None else None})


#: What to write for tomllib's commonest complaints (its message names the line and column only).
_TOML_HINTS: tuple[tuple[str, str], ...] = (
    ("Cannot overwrite a value", "a key is written twice in the same table: keep one of the two lines"),
    ("twice", "a table is written twice (or its keys were also given as dotted keys): merge them into one [table]"),
    ("Cannot declare", "a table is written twice: merge them into one [table]"),
    ("Invalid value", 'text needs quotes (label = "Death"), true/false and numbers do not'),
    ("Expected '=' after a key", 'each line is key = value (a key with spaces needs quotes: "my key" = 1)'),
    ("Illegal character", "a control character in text: write it as an escape (\\t, \\u0000) or remove it"),
    ("Unclosed", "a string, array or table is not closed: add the closing quote or bracket"),
    ("Invalid initial character", "a key starts with a letter, a digit, _ or -, or is quoted"),
)


def _toml_line(text: str, message: str) -> str:
    """The text of the line tomllib names (``at line 4``), for the message: the user sees what it read."""
    found = re.search(r"at line (\d+)", message)
    lines = text.splitlines()
    if found is None or not 0 < int(found.group(1)) <= len(lines):
        return ""
    line = lines[int(found.group(1)) - 1].strip()
    return f" [{_shown(line, 80)}]" if line else ""


def _toml_hint(message: str) -> str:
    for start, hint in _TOML_HINTS:
        if start in message:
            return f"; {hint} (TOML syntax: https://toml.io)"
    return "; see https://toml.io for the syntax (strings in quotes, lists in [ ], one key per line)"


def check_study(study: Study) -> Study:
    """Run the whole-study checks on a Study built in code; raise :class:`StudySpecError` if any fails."""
    problems = study_problems(study)
    if problems:
        raise StudySpecError("invalid study:\n  " + "\n  ".join(f"{_key(loc)}{msg}" for loc, msg in problems))
    return study


# ---------------------------------------------------------------------------------------------
# Locating keys in the file text.
# ---------------------------------------------------------------------------------------------


def _split_key(dotted: str) -> tuple[str, ...]:
    # TOML itself reads the key (quoted parts with escapes, "a\\b", dots inside quotes); the regex is the
    # fallback for a line TOML would refuse anyway
    try:
        parsed: Any = tomllib.loads(f"{dotted} = 0")
        parts: list[str] = []
        while isinstance(parsed, dict) and len(parsed) == 1:
            key, parsed = next(iter(parsed.items()))
            parts.append(key)
        return tuple(parts)
    except tomllib.TOMLDecodeError:
        found = re.findall(r'"([^"]*)"|\'([^\']*)\'|([^.\s]+)', dotted)
        return tuple(a or b or c for a, b, c in found)


_PART = r"""(?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*')"""
_KEY = re.compile(rf"^({_PART}(?:\s*\.\s*{_PART})*)\s*=")


def key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Map each table header and key path to its 1-based line (``("criteria", 0, "window")`` -> 31).

    Array-of-tables entries (``[[criteria]]``) are numbered from 0 in order.
    Good enough for messages: keys inside multi-line strings may be misread.
    """
    found: dict[tuple[Any, ...], int] = {}
    current: tuple[Any, ...] = ()
    path: tuple[Any, ...]
    counts: dict[tuple[Any, ...], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        array = re.match(r"^\[\[\s*(.+?)\s*\]\]", stripped)
        if array:
            path = _split_key(array.group(1))
            counts[path] = counts.get(path, -1) + 1
            current = (*path, counts[path])
            found.setdefault(current, number)
            found.setdefault(path, number)
            continue
        table = re.match(r"^\[\s*(.+?)\s*\]", stripped)
        if table:
            path = _split_key(table.group(1))
            # [analysis.matching] under the last [[criteria]] would be a sub-table of that entry.
            parent = path[:1]
            if parent in counts and len(path) > 1:
                path = (*parent, counts[parent], *path[1:])
            current = path
            found.setdefault(current, number)
            continue
        key = _KEY.match(stripped)
        if key:
            found.setdefault((*current, *_split_key(key.group(1))), number)
    return found


def _line(lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> int | None:
    for end in range(len(loc), 0, -1):
        hit = lines.get(tuple(loc[:end]))
        if hit is not None:
            return hit
    # A section written only through its sub-tables ([outcomes.death] for "outcomes"): its first one.
    if loc:
        below = [n for k, n in lines.items() if k[: len(loc)] == tuple(loc)]
        if below:
            return min(below)
    return None


def _at(where: str, lines: dict[tuple[Any, ...], int], loc: tuple[Any, ...]) -> str:
    line = _line(lines, loc)
    return f"{where}, line {line}" if line else where


def _key(loc: tuple[Any, ...]) -> str:
    if not loc:
        return ""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            # a name with a dot, a space, a line break... is shown quoted (as TOML would write it)
            plain = re.fullmatch(r"[A-Za-z0-9_\-]+", str(part)) is not None
            text += ("." if text else "") + (str(part) if plain else _quoted(str(part)))
    return f"{text}: "


def _quoted(part: str) -> str:
    escaped = part.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


# ---------------------------------------------------------------------------------------------
# What is allowed at a location (for unknown keys and wrong literals).
# ---------------------------------------------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    """Strip Optional / Union-with-None from an annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _field_at(loc: tuple[Any, ...]) -> tuple[type[BaseModel] | None, Any]:
    """The model that holds the last key of ``loc`` and that key's annotation (None when unknown)."""
    model: Any = Study
    annotation: Any = None
    parts = list(loc)
    holder: type[BaseModel] | None = None
    while parts:
        part = parts.pop(0)
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            if field is None:
                return model, None
            holder, annotation = model, field.annotation
            model = _unwrap(annotation)
            continue
        origin = typing.get_origin(model)
        if origin is dict:
            model = _unwrap(typing.get_args(model)[1])
        elif origin is tuple:
            model = _unwrap(typing.get_args(model)[0])
        else:
            break
    return holder, annotation


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model whose keys live at ``loc`` (the section of an unknown key)."""
    if not loc:
        return Study
    _, annotation = _field_at(loc)
    target = _unwrap(annotation) if annotation is not None else None
    while target is not None and typing.get_origin(target) in (dict, tuple):
        target = _unwrap(typing.get_args(target)[-1 if typing.get_origin(target) is dict else 0])
    if isinstance(target, type) and issubclass(target, BaseModel):
        return target
    return None


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model = _model_at(loc)
    if model is None:
        return []
    return [k for k in model.model_fields if k not in ("source_text", "source_path", "text") and model is not Window]


def _literal_values(loc: tuple[Any, ...]) -> list[str]:
    _, annotation = _field_at(loc)
    if annotation is None:
        return []
    values: list[str] = []
    stack = [annotation]
    while stack:
        a = stack.pop()
        if typing.get_origin(a) is typing.Literal:
            values += [str(v) for v in typing.get_args(a)]
        else:
            stack += list(typing.get_args(a))
    return values


_SECTION_HELP = {
    "study": 'name = "my_study", title = "..."',
    "index": 'concept = "<entry concept>", label = "<what the index is>"',
    "exposure": 'concept = "<exposure concept>", label = "<arm label>", window = "(0h, 24h]"',
    "comparator": 'kind = "none" (or "active" with concept = ...), label = "<arm label>"',
    "outcomes": '[outcomes.death] kind = "death", label = "Death", horizon_days = 90, primary = true',
}


def _explain(exc: ValidationError, lines: dict[tuple[Any, ...], int], where: str) -> str:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        at = _at(where, lines, loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" did you mean {close[0]!r}?" if close else ""
            problems.append(f"{at}: unknown key {_key(loc)[:-2]!r};{hint} Allowed here: {allowed}")
        elif kind == "missing":
            need = _SECTION_HELP.get(str(loc[-1])) if len(loc) == 1 else None
            if need:
                problems.append(
                    f"{at}: section [{loc[0]}] is missing; a study must state it (nothing defaults to another "
                    f"study), e.g. {need}"
                )
            else:
                write = _write_hint(loc)
                problems.append(f"{at}: {_key(loc)}required key is missing" + (f"; add {write}" if write else ""))
        elif kind == "literal_error":
            allowed = _literal_values(loc)
            given = err.get("input")
            close = difflib.get_close_matches(str(given), allowed, n=1) if isinstance(given, str) else []
            if not close and isinstance(given, str) and given.strip().lower() in allowed:
                close = [given.strip().lower()]  # "NEAREST", " first ": values are written in lower case
            hint = f"; did you mean {close[0]!r}?" if close else "."
            problems.append(f"{at}: {_key(loc)}{_shown(given)} is not allowed{hint} Allowed: {allowed}")
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            if kind == "string_pattern_mismatch":
                msg = f"must be a lower-case identifier ({_NAME_RULE}), e.g. my_name"
            elif kind in _TYPE_HINTS:
                msg += f"; write {_TYPE_HINTS[kind]}"
            if "window" in str(loc) and "window" not in msg:
                msg += f"; write {WINDOW_SYNTAX}"
            given = err.get("input")
            shown = f" = {_shown(given)}" if not isinstance(given, dict) and given is not None else ""
            problems.append(f"{at}: {_key(loc)[:-2]}{shown} is invalid: {msg}")
    return "invalid study file:\n  " + "\n  ".join(problems)


#: What to write when a value has the wrong TOML type (pydantic's error type -> an example).
_TYPE_HINTS = {
    "tuple_type": 'a list in brackets, e.g. ["a", "b"]',
    "list_type": 'a list in brackets, e.g. ["a", "b"]',
    "dict_type": "a table: [section] lines, or { key = value } inline",
    "model_type": "a table: [section] lines, or { key = value } inline",
    "model_attributes_type": "a table: [section] lines, or { key = value } inline",
    "float_type": "a number, e.g. 2.5",
    "float_parsing": "a number, e.g. 2.5 (without quotes)",
    "int_type": "a whole number, e.g. 7",
    "int_parsing": "a whole number, e.g. 7 (without quotes)",
    "int_from_float": "a whole number, e.g. 7",
    "string_type": 'text in quotes, e.g. "Death"',
    "bool_type": "true or false (without quotes)",
    "bool_parsing": "true or false (without quotes)",
    "finite_number": "a finite number (nan and inf are not values here)",
    "too_short": "at least one value (or leave the key out where it has a default)",
    "string_too_short": "some text (an empty string is not a value here)",
    "tuple_type_too_short": "the list with every item",
    "int_parsing_size": "a whole number up to 9223372036854775807 (TOML's largest)",
    "string_too_long": "a shorter one",
}


def _shown(value: Any, limit: int = 60) -> str:
    """``repr`` of a value for a message, cut after ``limit`` characters."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[:limit]}...{size}"


def _write_hint(loc: tuple[Any, ...]) -> str:
    """``key = <example>`` for a missing key, from its annotation (empty when nothing useful is known)."""
    allowed = _literal_values(loc)
    if allowed:
        return f'{loc[-1]} = "{allowed[0]}" (one of {allowed})'
    _, annotation = _field_at(loc)
    target = _unwrap(annotation) if annotation is not None else None
    examples = {str: '"..."', float: "a number", int: "a whole number", bool: "true or false"}
    if target in examples:
        return f"{loc[-1]} = {examples[target]}"
    if typing.get_origin(target) is tuple:
        return f'{loc[-1]} = ["..."]'
    if typing.get_origin(target) is dict:
        return f"{loc[-1]} = {{ name = value }}"
    if target is Window:
        return f'{loc[-1]} = "(0h, 24h]" ({WINDOW_SYNTAX})'
    return ""


__all__ = ["check_study", "key_lines", "load_study_file", "parse_study", "parse_study_text"]
