"""Evaluation: metric functions, plots and result reports."""
