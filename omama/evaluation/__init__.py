"""Evaluation: predictions in the official format, the official metrics, the challenge submission."""
