"""The challenge submission: the one JSON file the Ego-Exo4D correspondence server takes.

The challenge repository's ``evalai/generate_evalai_submission.py`` combines the test predictions of
both directions into ``{"ego-exo": {"version": "xx", "challenge": "xx", "results": ...}, "exo-ego":
{...}}``, each ``results`` taken unchanged from that direction's prediction file. Here either block
may come alone (an exo2ego or an ego2exo experiment named in ``submissions.<name>``).
"""

from __future__ import annotations

from omama.direction import Direction
from omama.io import read_json, write_json

VERSION = CHALLENGE = "xx"  # the values the official script writes ("DO NOT CHANGE")


def build_submission(predictions: dict[str, str]) -> dict:
    """The submission from ``predictions``: direction (exo2ego, ego2exo) -> that direction's test
    predictions.json (the experiment's official-format file)."""
    if not predictions:
        raise ValueError("a submission needs the test predictions of an exo2ego or an ego2exo experiment")
    out = {}
    for direction, path in sorted(predictions.items(), key=lambda kv: Direction(kv[0]).submission_key):
        key = Direction(direction).submission_key
        block = read_json(path, "predictions")
        if key not in block or "results" not in block[key]:
            raise ValueError(f"{path} holds no {key!r} -> 'results' block: is it the predictions of a {direction} experiment?")
        out[key] = {"version": VERSION, "challenge": CHALLENGE, "results": block[key]["results"]}
    return out


def write_submission(*, predictions: dict[str, str], out) -> dict:
    """Write the submission (see ``build_submission``); returns a summary: takes and predictions per block."""
    submission = build_submission(predictions)
    write_json(out, submission)
    return {
        key: {
            "takes": len(block["results"]),
            "predictions": sum(
                len(frames) for t in block["results"].values() for pairs in t["masks"].values() for frames in pairs.values()
            ),
        }
        for key, block in submission.items()
    }
