"""Logging for pipeline jobs: everything (logging records, tqdm bars, warnings) into the job's log file."""

from __future__ import annotations

import logging
import sys


def log_to(path: str) -> None:
    """Send logging and stderr (where tqdm writes) of this process to ``path``."""
    stream = open(path, "a", buffering=1)
    sys.stderr = stream
    logging.basicConfig(
        stream=stream, level=logging.INFO, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.captureWarnings(True)
