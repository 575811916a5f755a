"""Mask proposals: the proposer kinds and the per-take proposal tables."""
