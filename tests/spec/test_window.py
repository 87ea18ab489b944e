"""Window notation: brackets, units, unbounded ends, the index calendar day, and what is refused."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from retrocohort.spec import Window


@pytest.mark.parametrize(
    ("text", "start", "end", "start_closed", "end_closed"),
    [
        ("(0h, 48h]", 0.0, 48.0, False, True),
        ("[-24h, 24h]", -24.0, 24.0, True, True),
        ("[-365d, 0h)", -365 * 24.0, 0.0, True, False),
        ("(-inf, 48h]", -math.inf, 48.0, False, True),
        ("[1d, inf)", 24.0, math.inf, True, False),
        (" [ 1.5h , 2D ] ", 1.5, 48.0, True, True),
        ("[0h, 0h]", 0.0, 0.0, True, True),
    ],
)
def test_interval_notation(text, start, end, start_closed, end_closed):
    w = Window.model_validate(text)
    assert (w.start_hours, w.end_hours, w.start_closed, w.end_closed) == (start, end, start_closed, end_closed)
    assert not w.calendar_day


def test_index_day():
    w = Window.model_validate("index_day")
    assert w.calendar_day and w.bounded
    assert w.describe() == "the index calendar day"


def test_unbounded_is_not_bounded():
    assert not Window.model_validate("(-inf, 0h]").bounded
    assert Window.model_validate("(0h, 24h]").bounded


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("(48h, 0h]", "is after its end"),
        ("(0h, 0h]", "is empty"),
        ("0h, 24h", "is not a window"),
        ("(0, 24h]", "give each finite end a unit"),
        ("(0h; 24h]", "is not a window"),
        ("[inf, inf]", "cannot be +inf"),
        ("(2w, 3w]", "is not a window"),
    ],
)
def test_refused(text, words):
    with pytest.raises(ValidationError) as info:
        Window.model_validate(text)
    assert words in str(info.value)


def test_table_form_is_checked_too():
    with pytest.raises(ValidationError, match="is after its end"):
        Window.model_validate({"start_hours": 5, "end_hours": 1})
