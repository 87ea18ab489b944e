"""Time windows relative to the index, written as intervals: ``"(0h, 48h]"``, ``"[-365d, 0h)"``, ``"index_day"``.

A bracket closes an end (the boundary time counts), a parenthesis opens it.
Ends are hours (``h``) or days (``d``) from the index time; ``-inf`` / ``inf``
leave an end unbounded. ``"index_day"`` is the index's calendar day, 00:00:00
to 23:59:59. Pure description: nothing here touches data.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

_END = r"\s*([+-]?(?:inf|\d+(?:\.\d*)?|\.\d+))\s*([hd]?)\s*"
_INTERVAL = re.compile(rf"^\s*([\[(]){_END},{_END}([\])])\s*$", re.IGNORECASE)

#: How a window is written, for error messages.
WINDOW_SYNTAX = (
    'an interval such as "(0h, 48h]", "[-24h, 24h]", "[-365d, 0h)" or "(-inf, 48h]" '
    "('[' / ']' include the end, '(' / ')' exclude it; h = hours, d = days), or \"index_day\""
)


#: Farthest finite window end: 100 years (longer is a typo, and overflows the date arithmetic).
MAX_WINDOW_HOURS = 36_525 * 24.0


class Window(BaseModel):
    """A window relative to the index time.

    Attributes
    ----------
    start_hours, end_hours
        Ends in hours from the index (``-inf`` / ``inf`` for unbounded).
    start_closed, end_closed
        Whether the boundary time itself belongs to the window.
    calendar_day
        True for ``"index_day"``: the index's calendar day (the other fields are then unused).
    text
        The window as written (for the report and error messages).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_hours: float = -math.inf
    end_hours: float = math.inf
    start_closed: bool = True
    end_closed: bool = True
    calendar_day: bool = False
    text: str = ""

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_window(value)
        if isinstance(value, dict) and not value.get("calendar_day") and not {"start_hours", "end_hours"} <= set(value):
            # a TOML table (window = {} or a typo inside one) would otherwise default to (-inf, inf): every time
            raise ValueError(f"write the window as text: {WINDOW_SYNTAX}")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.calendar_day:
            return self
        if math.isnan(self.start_hours) or math.isnan(self.end_hours):
            raise ValueError("a window end is not a number")
        if self.start_hours == math.inf or self.end_hours == -math.inf:
            raise ValueError(
                f"window {self.describe()}: the start cannot be +inf nor the end -inf; write the earlier time first, "
                'e.g. "(-inf, 48h]"'
            )
        far = [h for h in (self.start_hours, self.end_hours) if math.isfinite(h) and abs(h) > MAX_WINDOW_HOURS]
        if far:
            raise ValueError(
                f"window {self.describe()}: an end of {_fmt(far[0])} is more than 100 years from the index; "
                'write -inf or inf for an open end, e.g. "(-inf, 0h]"'
            )
        if self.start_hours > self.end_hours:
            raise ValueError(
                f"window {self.describe()}: its start ({_fmt(self.start_hours)}) is after its end "
                f"({_fmt(self.end_hours)}); write the earlier time first"
            )
        if self.start_hours == self.end_hours and not (self.start_closed and self.end_closed):
            raise ValueError(f"window {self.describe()} is empty: equal ends need both brackets closed, e.g. [0h, 0h]")
        return self

    def describe(self) -> str:
        """The window in interval notation, e.g. ``(index + 0 h, index + 48 h]``."""
        if self.calendar_day:
            return "the index calendar day"
        if self.text:
            return self.text
        lo = "(" if not self.start_closed or self.start_hours == -math.inf else "["
        hi = ")" if not self.end_closed or self.end_hours == math.inf else "]"
        return f"{lo}{_fmt(self.start_hours)}, {_fmt(self.end_hours)}{hi}"

    @property
    def bounded(self) -> bool:
        """Whether both ends are finite (or the window is a calendar day)."""
        return self.calendar_day or (math.isfinite(self.start_hours) and math.isfinite(self.end_hours))


def _shown(text: str, limit: int = 60) -> str:
    """``repr`` of a text for a message, cut after ``limit`` characters."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def _fmt(hours: float) -> str:
    if math.isinf(hours):
        return "-inf" if hours < 0 else "inf"
    return f"{hours:g}h"


def parse_window(text: str) -> dict[str, Any]:
    """Parse the interval notation into :class:`Window` fields.

    Raises
    ------
    ValueError
        The text is not a window; the message shows the notation.
    """
    stripped = text.strip()
    if stripped.lower().replace(" ", "_") in ("index_day", "index_calendar_day"):
        return {"calendar_day": True, "text": "index_day"}
    match = _INTERVAL.match(stripped)
    if match is None:
        raise ValueError(f"{_shown(text)} is not a window; write {WINDOW_SYNTAX}")
    open_bracket, lo, lo_unit, hi, hi_unit, close_bracket = match.groups()
    values = []
    for number, unit in ((lo, lo_unit), (hi, hi_unit)):
        value = float(number)
        if math.isfinite(value):
            if not unit:
                raise ValueError(f'{text!r}: give each finite end a unit, h (hours) or d (days), e.g. "(0h, 48h]"')
            value = value * 24.0 if unit.lower() == "d" else value
        values.append(value)
    return {
        "start_hours": values[0],
        "end_hours": values[1],
        "start_closed": open_bracket == "[" and math.isfinite(values[0]),
        "end_closed": close_bracket == "]" and math.isfinite(values[1]),
        "text": stripped,
    }


__all__ = ["WINDOW_SYNTAX", "Window", "parse_window"]
