"""Every job's timing, for the report: the Snakemake benchmark files of the rules that ran, found through the
workflow's own rules (their benchmark patterns), not through a hand-kept list.

``collect`` reads the benchmark folder, keeps the files that match a rule's pattern with wildcard values the
current config knows (so timings of experiments or datasets since removed from it are left out) and writes one
row per job: its rule, job path, seconds, peak memory and CPU seconds.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from omama.io import write_parquet

COLUMNS = ["rule", "job", "s", "max_rss", "cpu"]


def pattern_regex(pattern: str) -> re.Pattern:
    """A benchmark pattern (``.../features/{dataset}/{backbone}/{take}.tsv``) as a regex with one named
    group per wildcard (a wildcard matches one path part)."""
    parts = re.split(r"\{(\w+)\}", pattern)
    regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
    return re.compile(regex + r"\Z")


def read_benchmark(path: Path) -> dict:
    try:
        b = pd.read_csv(path, sep="\t")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"malformed benchmark file {path}: {e}") from e
    if b.empty or "s" not in b.columns:
        raise ValueError(f"malformed benchmark file {path}: no 's' column")
    number = lambda col: pd.to_numeric(b.get(col, pd.Series([np.nan])), errors="coerce")
    return {"s": float(b["s"].mean()), "max_rss": float(number("max_rss").max()), "cpu": float(number("cpu_time").mean())}


def collect(*, benchmarks: str, patterns: dict[str, str], known: dict[str, list[str]], out) -> pd.DataFrame:
    """The timing table of the jobs under ``benchmarks`` whose rule (``patterns``: rule -> benchmark pattern)
    matches and whose wildcard values are all ``known`` (wildcard -> values of the current config; a wildcard
    not listed takes any value); written to ``out`` (parquet)."""
    regexes = {rule: pattern_regex(p) for rule, p in patterns.items()}
    rows = []
    for path in sorted(Path(benchmarks).rglob("*.tsv")):
        for rule, regex in regexes.items():
            m = regex.match(str(path))
            if m and all(v in known.get(k, [v]) for k, v in m.groupdict().items()):
                rows.append({"rule": rule, "job": str(path.relative_to(benchmarks).with_suffix("")), **read_benchmark(path)})
                break
    table = pd.DataFrame(rows, columns=COLUMNS)
    write_parquet(out, table)
    return table
