"""House style of every figure: colour-blind-safe palette, publication fonts.

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas
attached explicitly and never through ``pyplot``: they render on servers
without a display, nothing is registered in pyplot's global figure manager
(no figure leaks between calls, nothing to close by hand), and importing
retrocohort never switches the user's matplotlib backend (a notebook keeps
its inline backend).
Style is applied with :func:`matplotlib.rc_context` around creation and
saving only, so the caller's rcParams are never changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:  # only mypy needs it, and older matplotlib releases lack RcKeyType
    from matplotlib.typing import RcKeyType

# Okabe & Ito (2008), safe for the common colour-vision deficiencies and in greyscale
# when paired with different line styles. Exposed arm first, comparator second.
OKABE_ITO = {
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "bluish_green": "#009E73",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "reddish_purple": "#CC79A7",
    "yellow": "#F0E442",
    "black": "#000000",
    "grey": "#6E6E6E",
}
ARM_COLOURS = (OKABE_ITO["vermillion"], OKABE_ITO["blue"])  # comparator, exposed (by sorted group)
ARM_LINESTYLES = ("-", "--")
BEFORE_COLOUR = OKABE_ITO["grey"]
AFTER_COLOUR = OKABE_ITO["blue"]

# Keyed by RcKeyType so mypy rejects a misspelt rcParams key.
RC: dict[RcKeyType, Any] = {
    # Labels come from the study file: "$...$" in a label is text, never mathtext (a malformed one would
    # stop the run with a parser traceback, and a well-formed one would be typeset as a formula).
    "text.parse_math": False,
    "font.family": "sans-serif",
    # Arial-metric fonts first (journals ask for Arial/Helvetica), DejaVu as the fallback.
    "font.sans-serif": ["Arial", "Helvetica", "Liberation Sans", "DejaVu Sans"],
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.linewidth": 0.8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.major.width": 0.8,
    "ytick.major.width": 0.8,
    "lines.linewidth": 1.5,
    "legend.frameon": False,
    "savefig.dpi": 300,
    # Text stays text in SVG (editable in Illustrator/Inkscape); fixed hash salt
    # and no date make the SVG byte-identical between runs.
    "svg.fonttype": "none",
    "svg.hashsalt": "retrocohort",
    "pdf.fonttype": 42,
}


@contextmanager
def style() -> Iterator[None]:
    """Apply the house style for the duration of a block (rcParams restored after)."""
    with matplotlib.rc_context(RC):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A Figure with an Agg canvas, outside pyplot's figure manager (width/height in inches)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def arm_style(position: int) -> dict:
    """Colour and line style of the arm at ``position`` among the sorted groups."""
    return {
        "color": ARM_COLOURS[position % len(ARM_COLOURS)],
        "linestyle": ARM_LINESTYLES[position % len(ARM_LINESTYLES)],
    }
