"""retrocohort.report: tables, figures, text and the self-contained HTML report of a study.

Presentation only: every function reads result objects (``StudyResult`` and
the survival/matching results inside it) and formats them; nothing here fits
a model. Counts follow the study's small-cell rule (:mod:`.suppression`).
"""

from .figures import (
    cumulative_incidence_plot,
    flow_diagram,
    forest_plot,
    kaplan_meier_plot,
    love_plot,
    propensity_distributions,
    save_figure,
    study_figures,
    subgroup_forest_plot,
)
from .html import render_html
from .suppression import format_count, suppress_counts_in_text, suppress_frame, suppress_small_cells
from .tables import (
    at_risk_table,
    attrition_table,
    estimates_frame,
    ph_test_table,
    results_table,
    suppress_table_one,
    table_one_combined,
)
from .text import methods_paragraph, results_paragraph

__all__ = [
    "at_risk_table",
    "attrition_table",
    "cumulative_incidence_plot",
    "estimates_frame",
    "flow_diagram",
    "forest_plot",
    "format_count",
    "kaplan_meier_plot",
    "love_plot",
    "methods_paragraph",
    "ph_test_table",
    "propensity_distributions",
    "render_html",
    "results_paragraph",
    "results_table",
    "save_figure",
    "study_figures",
    "subgroup_forest_plot",
    "suppress_counts_in_text",
    "suppress_frame",
    "suppress_small_cells",
    "suppress_table_one",
    "table_one_combined",
]
