"""Datasets: the kinds of takes (Ego-Exo4D download, local copy, synthetic, photo pairs, motorcycle, BOP), their
take index, fetching and extraction into the per-take layout, and the pairs and splits built on it."""
