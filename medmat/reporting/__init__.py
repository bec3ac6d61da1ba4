"""Result tables (Markdown, CSV, JSON) and example figures."""

from medmat.reporting.figures import example_grid, reliability_plot, save_figure
from medmat.reporting.tables import MATTING_METRICS, summarise, table_csv, table_markdown, write_tables

__all__ = ["MATTING_METRICS", "example_grid", "reliability_plot", "save_figure", "summarise", "table_csv", "table_markdown", "write_tables"]
