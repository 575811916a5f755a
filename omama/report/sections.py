"""The report's sections, each a dict of rendered tables, figures and overlays for the template,
read from the report's declared inputs (``Inputs``)."""

from __future__ import annotations

import json

import pandas as pd

from omama.evaluation.metrics import Bootstrap, balanced_accuracy_difference, difference_interval, mean_interval, present
from omama.io import read_json, read_parquet
from omama.report.inputs import Inputs, ReportParams
from omama.report.overlays import Frames, overlay
from omama.report.tables import (
    METRICS,
    SAMPLE_KEY,
    dict_rows,
    html_table,
    load_samples,
    mean_with_ci,
    metric_cells,
    skip_counts,
)


def run_summary(p: ReportParams, files: Inputs, dataset: str, takes: list[str], split_tables: dict[str, pd.DataFrame]) -> dict:
    skipped: dict[tuple[str, str], int] = {}
    for t in takes:
        ann = read_json(files.annotation(t), "annotation file")
        for s in ann.get("skipped", []):
            key = ("extract", str(s.get("reason", "unspecified")))
            skipped[key] = skipped.get(key, 0) + 1
    counts = []
    for split, df in split_tables.items():
        for part in ("train", "val", "test"):
            d = df[df["split"] == part]
            counts.append(
                {
                    "split strategy": split,
                    "subset": part,
                    "takes": d["take_uid"].nunique(),
                    "frames": len(d[["take_uid", "frame"]].drop_duplicates()),
                    "objects": len(d[["take_uid", "object"]].drop_duplicates()),
                    "object labels": d["label"].nunique(),
                    "pairs": len(d),
                    "ego present": int(d["ego_present"].sum()),
                }
            )
    backbones = []
    for name in sorted({x["backbone_name"] for x in p.experiments.values()}):
        cfg = p.backbones[name]
        attrs = feature_attrs(files, name, takes)
        untrained = cfg.get("weights") == "untrained" or bool(attrs.get("untrained"))
        backbones.append(
            {
                "name": name,
                "kind": cfg["kind"],
                "weights": cfg["weights"],
                "untrained": untrained,
                "attrs": {k: v if isinstance(v, (str, int, float, bool)) else json.dumps(v) for k, v in attrs.items()},
            }
        )
    proposers = [{"name": n, **p.proposers[n]} for n in sorted({x["proposer_name"] for x in p.experiments.values()})]
    index = read_json(files.index_summary(), "take index summary")
    pairs = read_json(files.pairs_summary(), "pairs summary")
    for source, d in (("take index", index), ("pairs", pairs), ("pairs, ego->exo", pairs.get("ego2exo", {}))):
        for k, v in skip_counts(d).items():
            skipped[(source, k)] = skipped.get((source, k), 0) + v
    return {
        "kind": p.datasets[dataset]["kind"],
        "counts": html_table(pd.DataFrame(counts), index=False),
        "backbones": backbones,
        "proposers": proposers,
        "index": dict_rows(index),
        "pairs": dict_rows(pairs),
        "skipped": [{"stage": s, "reason": k, "count": v} for (s, k), v in sorted(skipped.items())],
    }


def feature_attrs(files: Inputs, backbone: str, takes: list[str]) -> dict:
    """The backbone description recorded in the first feature store of a backbone."""
    from omama.features.store import FeatureStore

    for t in takes:
        path = files.features(backbone, t)
        if path.exists():
            attrs = FeatureStore(path).attrs
            return {**attrs.get("backbone", {}), "store dtype": attrs.get("dtype")}
    return {}


def proposal_recall(p: ReportParams, files: Inputs, takes: list[str]) -> pd.DataFrame:
    rows = []
    for name in sorted({x["proposer_name"] for x in p.experiments.values()}):
        parts = [read_parquet(files.recall(name, t)).assign(take_uid=t) for t in takes]
        rec = pd.concat(parts) if parts else pd.DataFrame(columns=["take_uid", "best_iou", "n_proposals"])
        rec = rec.assign(**{f"r{q}": rec["best_iou"] >= q for q in (0.5, 0.75)})
        rows.append(
            {
                "proposer": name,
                "ego masks": len(rec),
                "mean best IoU (ceiling)": mean_with_ci(rec, "best_iou", p.boot),
                "recall@0.5": mean_with_ci(rec, "r0.5", p.boot),
                "recall@0.75": mean_with_ci(rec, "r0.75", p.boot),
                "proposals per frame": rec["n_proposals"].mean(),
            }
        )
    return pd.DataFrame(rows)


def metrics_table(p: ReportParams, files: Inputs, samples: dict) -> pd.DataFrame:
    rows = []
    for s in p.subsets:
        scored = {n: x for n, x in p.experiments.items() if s in x["subsets"]}
        for name, x in scored.items():
            path = files.result("metrics.json", name, s)
            m = read_json(path, "metrics file")
            df = samples[s][name]
            rows.append(
                {
                    "subset": s,
                    "predictor": name,
                    "kind": "model" if x["matcher"] == "omama" else "training-free (cosine)",
                    "split": x["split"],
                    "backbone": x["backbone_name"],
                    **metric_cells(m, path),
                    "n present": m.get("n_present"),
                    "n total": m.get("n_total", m.get("predict_only", {}).get("predictions")),
                    "ceiling (best proposal IoU)": mean_with_ci(df[df.ego_present], "best_possible_iou", p.boot),
                }
            )
        for split, proposer in sorted({(x["split"], x["proposer_name"]) for x in scored.values()}):
            for ref in p.references:
                path = files.reference("metrics.json", split, proposer, s, ref)
                m = read_json(path, "reference metrics")
                rows.append(
                    {
                        "subset": s,
                        "predictor": f"reference: {ref}",
                        "kind": "reference",
                        "split": split,
                        "backbone": "–",
                        **metric_cells(m, path),
                        "n present": m.get("n_present"),
                        "n total": m.get("n_total"),
                        "ceiling (best proposal IoU)": "–",
                    }
                )
    df = pd.DataFrame(rows)
    return df.rename(columns=dict(METRICS))


def scored_only_section(p: ReportParams, files: Inputs, dataset: str) -> dict:
    """A dataset experiments are only scored on (every row a test row; photo pairs, BOP scenes): per-experiment
    metrics with the reference predictors', paired differences (the ``report.compare`` pairs scored here, and
    every experiment against every reference), per sample and object, and overlays of every sample."""
    frames = Frames(files)
    names = list(p.experiments)
    metrics, per_pair, preds, samples = [], None, {}, {}
    for name in names:
        path = files.result("metrics.json", name, "test")
        m = read_json(path, "metrics file")
        metrics.append(
            {"experiment": name, **metric_cells(m, path), "n present": m.get("n_present"), "n total": m.get("n_total")}
        )
        df = load_samples(files.result("samples.parquet", name, "test"))
        samples[name] = df
        preds[name] = read_json(files.result("predictions.json", name, "test"), "predictions")
        cols = df[["take_uid", "object", "ego_present", "iou", "confidence", "pred_exists"]].rename(
            columns={
                "take_uid": "take",
                "iou": f"IoU {name}",
                "confidence": f"confidence {name}",
                "pred_exists": f"predicted present {name}",
            }
        )
        per_pair = cols if per_pair is None else per_pair.merge(cols, on=["take", "object", "ego_present"], how="outer")
    proposers = sorted({p.experiments[e]["proposer_name"] for e in names})
    for q in proposers:
        for ref in p.references:
            path = files.reference("metrics.json", "all", q, "test", ref)
            m = read_json(path, "reference metrics")
            metrics.append(
                {
                    "experiment": f"reference: {ref} ({q})",
                    **metric_cells(m, path),
                    "n present": m.get("n_present"),
                    "n total": m.get("n_total"),
                }
            )
    overlays = []
    first = samples[names[0]]
    indexed = {n: samples[n].set_index(SAMPLE_KEY) for n in names}
    for row in first.sort_values(SAMPLE_KEY).itertuples():
        key = tuple(getattr(row, k) for k in SAMPLE_KEY)
        if row.ego_present:
            outcome = "IoU " + ", ".join(f"{n} {float(d.loc[key, 'iou']):.3f}" for n, d in indexed.items())
        else:
            outcome = "; ".join(
                f"{n} says {'present' if d.loc[key, 'pred_exists'] else 'absent'} "
                f"(confidence {float(d.loc[key, 'confidence']):.2f})"
                for n, d in indexed.items()
            )
        overlays.append(
            {
                "img": overlay(frames, row, [preds[n] for n in names[:2]]),
                "caption": f"{row.take_uid}, frame {row.frame}, object {row.object} ({'present' if row.ego_present else 'absent'} "
                f"in {row.ego_cam}): {outcome}",
            }
        )
    skipped = [
        {"take": t["take_uid"], **s}
        for t in read_json(files.index(), "take index")
        for s in frames.annotation(t["take_uid"]).get("skipped", [])
    ]
    legend = " · ".join(f"{c} = prediction of {n}" for c, n in zip(("magenta", "blue"), names[:2]))
    references = {
        f"reference: {ref} ({q})": load_samples(files.reference("samples.parquet", "all", q, "test", ref))
        for q in proposers
        for ref in p.references
    }
    compared = [(a, b) for a, b in p.compare if a in samples and b in samples]
    pairs = compared + [(r, e) for e in names for r in references]
    changes = []
    for a, b in compared:  # where b helped and where it hurt most
        j = paired_deltas(samples[a], samples[b])
        j = j[j["delta"] != 0]
        for label, part in (("helped", j.nlargest(p.overlays, "delta")), ("hurt", j.nsmallest(p.overlays, "delta"))):
            changes += [
                {
                    "img": overlay(frames, row, [preds[a], preds[b]]),
                    "caption": f"{b} {label} ({a} magenta, {b} blue): {row.take_uid}, {row.object}: IoU {row.iou_a:.3f} → "
                    f"{row.iou_b:.3f}",
                }
                for row in part[part["delta"] > 0 if label == "helped" else part["delta"] < 0].itertuples()
            ]
    return {
        "name": dataset,
        "kind": p.datasets[dataset]["kind"],
        "metrics": html_table(pd.DataFrame(metrics).rename(columns=dict(METRICS)), index=False),
        "differences": html_table(paired_differences(pairs, {**samples, **references}, p.boot), index=False),
        "pairs": html_table(per_pair.sort_values(["take", "object"]), index=False, floatfmt="{:.3f}"),
        "overlays": overlays,
        "changes": changes,
        "legend": legend,
        "n_takes": int(first["take_uid"].nunique()),
        "n_frames": int(first[["take_uid", "frame"]].drop_duplicates().shape[0]),
        "skipped": html_table(pd.DataFrame(skipped), index=False) if skipped else None,
    }


def paired_differences(pairs: list[tuple[str, str]], samples: dict[str, pd.DataFrame], boot: Bootstrap) -> pd.DataFrame:
    """One row per pair (a, b): mean IoU difference b - a over the samples both score, with its
    bootstrap interval over takes and the verdict (``compare_iou``)."""
    rows = []
    for a, b in pairs:
        j = paired_deltas(samples[a], samples[b])
        c = compare_iou(samples[a], samples[b], j, boot)
        e = compare_existence(samples[a], samples[b], boot) if c["paired"] else {"diff": "–", "ci": "n/a"}
        rows.append(
            {
                "b − a": f"{b} − {a}",
                "ΔIoU": c["diff"],
                f"ΔIoU {boot.percent} interval": f"{c['ci']} ({'paired' if c['paired'] else 'unpaired'})",
                "b better / worse / equal": " / ".join(str(n) for n in change_counts(j).values()),
                "verdict": c["verdict"],
                "Δ existence bal. acc": e["diff"],
                f"Δ existence {boot.percent} interval (paired)": e["ci"],
            }
        )
    return pd.DataFrame(rows)


def change_counts(joined: pd.DataFrame) -> dict[str, int]:
    """How many of the ``paired_deltas`` samples b scores better, worse and the same as a."""
    d = joined["delta"]
    return {"better": int((d > 0).sum()), "worse": int((d < 0).sum()), "same": int((d == 0).sum())}


def paired_deltas(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """The samples both tables score, where ``a`` has the object present in the destination view
    (ego, or exo for ego->exo), joined (columns suffixed ``_a`` / ``_b``), with ``delta`` = IoU b - a."""
    j = a[present(a)].merge(b, on=SAMPLE_KEY, suffixes=("_a", "_b"))
    return j.assign(delta=j["iou_b"] - j["iou_a"])


def compare_existence(a: pd.DataFrame, b: pd.DataFrame, boot: Bootstrap) -> dict:
    """The existence balanced accuracy of b minus a's on the same scored frames, with its paired bootstrap
    interval over takes ("n/a" when no resample has both classes)."""
    diff, ci = balanced_accuracy_difference(a, b, boot)
    return {
        "diff": "–" if diff != diff else f"{diff:+.4f}",
        "ci": "n/a" if ci is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]",
    }


def compare_iou(a: pd.DataFrame, b: pd.DataFrame, joined: pd.DataFrame, boot: Bootstrap) -> dict:
    """The mean IoU difference b - a with its bootstrap interval over takes, and whether it excludes zero.

    Paired (the same scored samples in both): the interval of the mean per-sample difference, the
    same takes drawn for both. Otherwise (e.g. a frame-level against an object-level split) the
    comparison is unpaired: the interval of the difference of the two means, each experiment's
    takes drawn independently.
    """
    paired = set(map(tuple, a[SAMPLE_KEY].to_numpy().tolist())) == set(map(tuple, b[SAMPLE_KEY].to_numpy().tolist()))
    pa, pb = a[present(a)], b[present(b)]
    if paired:
        diff = float(joined["delta"].mean()) if len(joined) else None
        ci = mean_interval(joined["delta"], joined["take_uid"], boot) if len(joined) else None
    else:
        diff = float(pb["iou"].mean() - pa["iou"].mean()) if len(pa) and len(pb) else None
        ci = difference_interval(pa["iou"], pa["take_uid"], pb["iou"], pb["take_uid"], boot) if diff is not None else None
    if ci is None:
        verdict = "cannot be compared: an experiment has no sample with the object present in the destination view"
    else:
        distinct = ci[0] > 0 or ci[1] < 0
        verdict = f"the difference is {'' if distinct else 'not '}distinguishable from zero at {boot.percent}"
    return {
        "paired": paired,
        "diff": "–" if diff is None else f"{diff:+.4f}",
        "ci": "n/a" if ci is None else f"[{ci[0]:+.4f}, {ci[1]:+.4f}]",
        "verdict": verdict,
        "n_a": len(pa),
        "n_b": len(pb),
        "takes_a": int(pa["take_uid"].nunique()),
        "takes_b": int(pb["take_uid"].nunique()),
    }


def submission_section(p: ReportParams, files: Inputs) -> list[dict]:
    """Per challenge submission file: its blocks, with the takes and predictions each holds, against the test
    takes the take index of the experiment's dataset selected (a take left out there is missing from the file too)."""
    out = []
    for name, blocks in p.submissions.items():
        path = files.submission(name)
        sub = read_json(path, "submission")
        rows = []
        for direction, key in (("exo2ego", "exo-ego"), ("ego2exo", "ego-exo")):
            if direction not in blocks:
                continue
            dataset = p.experiments[blocks[direction]]["dataset"]
            index = read_json(files.data(dataset).index(), "take index")
            rows.append(
                {
                    "block": key,
                    "experiment": blocks[direction],
                    "dataset": dataset,
                    "takes": len(sub[key]["results"]),
                    "test takes selected": sum(t["annotation_split"] == "test" for t in index),
                    "predictions": sum(
                        len(f)
                        for t in sub[key]["results"].values()
                        for per_pair in t["masks"].values()
                        for f in per_pair.values()
                    ),
                }
            )
        out.append({"name": name, "path": str(path), "table": html_table(pd.DataFrame(rows), index=False)})
    return out
