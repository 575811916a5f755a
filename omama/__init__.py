"""omama: O-MaMa exo->ego object correspondence on Ego-Exo4D."""

__version__ = "0.1.0"
