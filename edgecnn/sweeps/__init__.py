"""Sweeps over widths and resolutions, and the zoo scorecard: serially or as Ray tasks."""
