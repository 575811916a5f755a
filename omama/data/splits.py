"""Train/val/test splits of the pairs at frame, take or object-label level, or the challenge's own
take split (``official``: a take's subset is the relations file it came from), with diagnostics."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from omama.io import read_parquet, write_json, write_parquet

SUBSETS = ("train", "val", "test")  # the parts a split assigns every pair to
GROUP_KEYS = {
    "frame": ["take_uid", "frame"],  # one instant (all its cameras and objects) stays in one split
    "take": ["take_uid"],
    "object": ["label"],  # no object label is shared between splits
}
OFFICIAL = "official"  # the subset is the take's annotation file: relations_{train,val,test}.json
ALL = "all"  # every row a test row: a dataset an experiment is evaluated on but not trained on
STRATEGIES = (*GROUP_KEYS, OFFICIAL, ALL)
PREDICT_ONLY = "predict-only rows (destination masks withheld), outside the official split's test subset"


def required_subsets(experiments: dict, evaluated: list[str], dataset: str, strategy: str) -> dict[str, list[str]]:
    """subset -> the experiments (``omama.experiment.Experiment`` by name) that use split ``strategy`` on
    ``dataset`` and need the subset non-empty: the subsets they are scored on there, and train when they are
    trained there (the existence head too)."""
    out: dict[str, list[str]] = {}
    for name, x in sorted(experiments.items()):
        if dataset not in (x.dataset, *x.evaluate_on) or x.split_on(dataset) != strategy:
            continue
        trains = dataset == x.dataset and (x.trained or x.existence == "head")
        scored = x.subsets_on(dataset, evaluated) if dataset in x.evaluate_on else []
        for subset in [*scored, *(["train"] if trains else [])]:
            if name not in out.setdefault(subset, []):
                out[subset].append(name)
    return out


def assign_groups(sizes: pd.Series, ratios: list[float], seed: int) -> pd.Series:
    """Map each group (index of ``sizes``, its pair count) to a split, aiming at ``ratios`` by pairs.

    Groups are shuffled with ``seed`` and laid end to end; a group goes to the split its
    middle falls in. Then every split with a positive ratio gets at least one group when
    there are enough groups (the smallest group of the split holding the most groups moves).
    """
    r = np.asarray(ratios, dtype=float)
    if abs(r.sum() - 1) > 1e-6:
        raise ValueError(f"split ratios {list(ratios)} sum to {r.sum():g}, not 1")
    bounds = np.cumsum(r / r.sum())
    order = np.random.default_rng(seed).permutation(len(sizes))
    n = sizes.to_numpy()[order]
    mid = (np.cumsum(n) - n / 2) / n.sum()
    idx = np.minimum(np.searchsorted(bounds, mid, side="right"), len(SUBSETS) - 1)
    for s in np.flatnonzero(r > 0):
        counts = np.bincount(idx, minlength=len(SUBSETS))
        if counts[s] == 0 and counts.max() > 1:
            donor = np.flatnonzero(idx == counts.argmax())
            idx[donor[np.argmin(n[donor])]] = s
    split = pd.Series(np.asarray(SUBSETS)[idx], index=sizes.index[order])
    return split


def split_pairs(
    pairs: pd.DataFrame, strategy: str, ratios: list[float], seed: int, required: dict[str, list[str]] | None = None
) -> pd.DataFrame:
    """The pairs with a "split" column in train/val/test.

    ``official``: each row's subset is its take's annotation file (``annotation_split``); ``all``: every
    row is a test row (a dataset an experiment is only evaluated on); neither draws anything. Predict-only rows (``scored`` False: the destination masks are withheld) belong to the
    official split's test subset only; the other strategies leave them out (``diagnostics`` counts them).
    ``required`` (subset -> experiments needing it) makes an empty needed subset an error.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown split strategy {strategy!r}; known: {sorted(STRATEGIES)}")
    if pairs.empty:
        raise ValueError("no pairs to split: pairs.json counts every exo mask left out, by reason")
    if strategy == ALL:
        out = pairs.assign(split="test")
        empty = lambda subset: f"split 'all' puts every row in test, so it has no {subset!r} rows"
    elif strategy == OFFICIAL:
        out = pairs.assign(split=pairs["annotation_split"])
        bad = out[~out["scored"] & (out["split"] != "test")]
        if len(bad):
            raise ValueError(
                f"takes {sorted(bad['take_uid'].unique())} of relations_{{train,val}}.json withhold their destination "
                f"masks: only takes of relations_test.json can be predict-only (scored by the challenge server)"
            )
        empty = lambda subset: (
            f"the official split has no {subset!r} rows: no selected take comes from relations_{subset}.json "
            f"(selection.annotation_splits, scenarios, take_limit, exclude_takes, or takes skipped by the take index)"
        )
    else:
        scored = pairs[pairs["scored"]] if "scored" in pairs else pairs
        if scored.empty:
            raise ValueError(
                f"no scored pairs to split with {strategy!r}: every row is predict-only (destination masks withheld)"
            )
        keys = GROUP_KEYS[strategy]
        sizes = scored.groupby(keys, sort=True).size()
        out = scored.join(assign_groups(sizes, ratios, seed).rename("split"), on=keys)
        empty = lambda subset: (
            f"split {strategy!r} leaves subset {subset!r} empty ({len(sizes)} group(s) of {'/'.join(keys)} for "
            f"ratios {list(ratios)})"
        )
    for subset, names in sorted((required or {}).items()):
        if not (out["split"] == subset).any():
            raise ValueError(
                f"{empty(subset)}, but experiment(s) {names} need it: select more takes (selection.take_limit), "
                f"use another split or change split.ratios"
            )
    return out


def diagnostics(df: pd.DataFrame, strategy: str, ratios: list[float] | None, seed: int | None, left_out: int = 0) -> dict:
    """Counts per split, per scenario and per ego presence, and object-label overlap between splits
    (of the exo2ego pairs), the ego2exo pairs per split and exo presence, the predict-only rows per
    split, and the rows ``left_out`` of the split (predict-only rows outside the official split)."""
    e2x = df[df["direction"] == "ego2exo"] if "direction" in df else pd.DataFrame({"split": [], "exo_present": []})
    scored = df["scored"] if "scored" in df else pd.Series(True, index=df.index)
    unscored = df[~scored]
    df = df[df["direction"] == "exo2ego"] if "direction" in df else df
    per = {s: df[df["split"] == s] for s in SUBSETS}
    labels = {s: set(d["label"]) for s, d in per.items()}
    return {
        "strategy": strategy,
        "ratios": None if ratios is None else list(ratios),
        "seed": seed,
        "pairs": len(df),
        "counts": {
            s: {
                "pairs": len(d),
                "fraction": round(len(d) / max(len(df), 1), 4),
                "takes": int(d["take_uid"].nunique()),
                "frames": int(d[["take_uid", "frame"]].drop_duplicates().shape[0]),
                "objects": int(d[["take_uid", "object"]].drop_duplicates().shape[0]),
                "labels": len(labels[s]),
            }
            for s, d in per.items()
        },
        "per_scenario": {
            sc: {s: int(((df["scenario"] == sc) & (df["split"] == s)).sum()) for s in SUBSETS}
            for sc in sorted(df["scenario"].unique())
        },
        "per_ego_presence": {
            s: {"present": int(d["ego_present"].sum()), "absent": int((~d["ego_present"]).sum())} for s, d in per.items()
        },
        "label_overlap": {f"{a}-{b}": sorted(labels[a] & labels[b]) for a, b in combinations(SUBSETS, 2)},
        "ego2exo": {
            s: {"pairs": int((e2x["split"] == s).sum()), "exo_present": int(((e2x["split"] == s) & e2x["exo_present"]).sum())}
            for s in SUBSETS
        },
        "predict_only": {s: int((unscored["split"] == s).sum()) for s in SUBSETS},
        "left_out": {PREDICT_ONLY: left_out} if left_out else {},
    }


def write_split(
    *,
    pairs_path: str,
    strategy: str,
    ratios: list[float],
    seed: int,
    split_out: str,
    diagnostics_out: str,
    required: dict[str, list[str]] | None = None,
) -> dict:
    """Split the pairs table and write the assignment (parquet) and its diagnostics (JSON)."""
    pairs = read_parquet(pairs_path)
    df = split_pairs(pairs, strategy, ratios, seed, required)
    if strategy in (OFFICIAL, ALL):
        ratios = seed = None  # nothing is drawn
    diag = diagnostics(df, strategy, ratios, seed, left_out=len(pairs) - len(df))
    write_parquet(split_out, df)
    write_json(diagnostics_out, diag, indent=1)
    return diag
