"""DataFrame subclasses returned by :func:`balance` and :func:`table_one`: plain DataFrames that also print
like R and draw themselves.

pandas operations on them (slicing, ``assign``, ``concat``) keep the subclass
(``_constructor``, as pandas recommends), so ``pandas.testing.assert_frame_equal``
between a result and a frame derived from another result still sees equal
types. A derived frame that lost the columns a repr needs prints as a plain
DataFrame. ``plot`` replaces pandas' ``DataFrame.plot`` accessor on these
frames; ``pandas.DataFrame(table).plot`` still reaches it.
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

    _REPR_COLUMNS = ("type", "mean_treated", "mean_control", "smd", "variance_ratio")

    @property
    def _constructor(self) -> type[BalanceTable]:
        return BalanceTable

    def __repr__(self) -> str:
        if not set(self._REPR_COLUMNS) <= set(self.columns):  # a derived frame without the balance columns
            return pd.DataFrame.__repr__(self)
        from .._printing import render_balance

        return render_balance(self)

    def _repr_html_(self) -> str:
        if not set(self._REPR_COLUMNS) <= set(self.columns):
            # pandas defines _repr_html_ at run time; its stubs do not declare it
            return str(super()._repr_html_())  # type: ignore[misc]
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
    def _constructor(self) -> type[TableOne]:
        return TableOne

    def __repr__(self) -> str:
        from .._printing import render_table_one

        return render_table_one(self)

    def _repr_html_(self) -> str:
        from .._printing import render_table_one_html

        return render_table_one_html(self)
