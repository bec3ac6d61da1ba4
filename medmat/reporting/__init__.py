"""Figures of results: example grids, reliability plots, the region-aware decoder's code positions.

(Metric tables live with the metrics: :mod:`medmat.metrics.tables`.)
"""

from medmat.reporting.figures import example_grid, reliability_plot, save_figure

__all__ = ["example_grid", "reliability_plot", "save_figure"]
