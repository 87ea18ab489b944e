"""DataFrame subclasses returned by :func:`balance` and :func:`table_one`: plain DataFrames that also print
like R and draw themselves.

Every pandas operation on them (slicing, ``assign``, ``concat``) returns a plain
``pandas.DataFrame`` (``_constructor``), so nothing downstream sees a new type;
only the frame the function returned has the extra ``plot`` / ``__repr__``.
``plot`` replaces pandas' ``DataFrame.plot`` accessor on these two frames;
``pandas.DataFrame(table).plot`` still reaches it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


class BalanceTable(pd.DataFrame):
    """The output of :func:`~retrocohort.matching.balance` / :func:`~retrocohort.matching.balance_before_after`.

    A ``pandas.DataFrame`` (same columns, see :func:`~retrocohort.matching.balance`)
    whose ``repr`` shows the standardized mean differences as ``cobalt::bal.tab``
    would at a glance, and whose :meth:`plot` draws the Love plot.
    """

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        return pd.DataFrame

    def __repr__(self) -> str:
        from .._printing import render_balance

        return render_balance(self)

    def _repr_html_(self) -> str:
        from .._printing import render_balance_html

        return render_balance_html(self)

    def plot(self, ax: Any = None, after: pd.DataFrame | None = None, threshold: float = 0.1) -> Any:  # type: ignore[override]
        """Love plot of the absolute SMD per term (the report's figure); returns a matplotlib Figure.

        Parameters
        ----------
        ax : matplotlib Axes to draw on, or None for a new Figure.
        after : balance after matching, when this table is the one before; not needed
            for the output of ``balance_before_after`` (its ``sample`` column splits it).
        threshold : the balance line (0.1 by convention).

        Returns
        -------
        matplotlib.figure.Figure
        """
        from ..report.figures import love_plot

        frame = pd.DataFrame(self)
        if "sample" in frame.columns:
            before = frame[frame["sample"] == "before"]
            after_frame: pd.DataFrame | None = frame[frame["sample"] == "after"]
        else:
            before, after_frame = frame, (pd.DataFrame(after) if after is not None else None)
        return love_plot(before, after_frame, threshold=threshold, ax=ax)


class TableOne(pd.DataFrame):
    """The output of :func:`~retrocohort.matching.table_one`: a ``pandas.DataFrame`` of formatted strings
    that prints as ``print(CreateTableOne(...), smd = TRUE)`` does (labels left, cells right-aligned)."""

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        return pd.DataFrame

    def __repr__(self) -> str:
        from .._printing import render_table_one

        return render_table_one(self)

    def _repr_html_(self) -> str:
        from .._printing import render_table_one_html

        return render_table_one_html(self)
