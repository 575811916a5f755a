"""report.html: every section there, every image decodes in a real (headless) browser, no
console errors, nothing fetched from the network, numbers taken from the results."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import default_config
from PIL import Image
from report_fixtures import PAIRS, declared, fabricate, patterns, report_params

from omama.config import validate
from omama.layout import Layout
from omama.report.build import write_report
from omama.report.timing import collect

MAIN = "tabletop"  # the dataset the experiments train on
PHOTO_SETS = ("photos", "motorcycle")  # photo-pair datasets they are also scored on (report: scored only)
SECTIONS = [
    *(
        f"{MAIN}-{s}"
        for s in ("summary", "metrics", "directions", "existence", "distributions", "breakdowns", "overlays", "splits")
    ),
    *PHOTO_SETS,
    "training",
    "submission",
    "timing",
]
EXPERIMENTS = {  # as the config names them (the schema fills the rest)
    "untrained": {"proposer": "classical", "split": "frame", "init": "none", "train": None},
    "trained": {"proposer": "classical", "split": "object", "train": {"epochs": 2}},
    "trained-head": {
        "proposer": "classical",
        "split": "object",
        "init": "experiment:trained",
        "train": None,
        "existence": "head",
    },
    "ego2exo": {"proposer": "classical", "split": "frame", "direction": "ego2exo", "train": {"epochs": 2}},
}
SCORED_ON_PHOTOS = ["untrained", "trained"]


def config(root: Path, *, photo_sets: bool = True, dataset: str = MAIN, entry: dict | None = None) -> dict:
    """A validated config: the experiments train on ``dataset`` (the default config's synthetic tabletop, or
    the dataset ``entry``); with ``photo_sets`` two of them are also scored on a ``photos`` and a ``motorcycle``
    dataset."""
    cfg = default_config()
    cfg["results"] = str(root)
    cfg["datasets"] = {
        dataset: entry or cfg["datasets"][MAIN],
        "photos": {"kind": "photos", "synthetic_pairs": 2},
        "motorcycle": cfg["datasets"]["motorcycle"],
    }
    cfg["backbones"] = {"tiny-dinov2": cfg["backbones"]["tiny-dinov2"]}
    cfg["experiments"] = {
        name: {
            "dataset": dataset,
            "backbone": "tiny-dinov2",
            **x,
            "evaluate_on": [dataset, *PHOTO_SETS] if photo_sets and name in SCORED_ON_PHOTOS else None,
        }
        for name, x in EXPERIMENTS.items()
    }
    cfg["evaluate"].update(subsets=["test"], references=["random"], bootstrap={"resamples": 200, "level": 0.95})
    cfg["submissions"] = {"challenge": {"exo2ego": "trained"}}
    cfg["report"] = {"compare": [["untrained", "trained"]], "overlays": 2}
    return validate(cfg)


# Collects page errors from the first moment (head), then reports images and sections on load.
PROBE_HEAD = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || (e.target && e.target.outerHTML) || e)), true);
const __ce = console.error; console.error = (...a) => { window.__errors.push(a.join(' ')); __ce(...a); };
</script>"""
PROBE_BODY = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const out = document.createElement('pre'); out.id = 'probe';
  out.textContent = JSON.stringify({
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0 && i.naturalHeight > 0)).map(i => i.alt),
    sections: Array.from(document.querySelectorAll('section')).map(s => s.id),
    errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("headless Chromium is needed for this test: apt-get install -y chromium")
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def params(root: Path, *, photo_sets: bool = True) -> dict:
    """The report rule's params for ``config(root, photo_sets=...)``."""
    return report_params(config(root, photo_sets=photo_sets))


def render(root: Path, p: dict, takes: dict[str, list[str]]) -> None:
    """``write_report`` on a fabricated tree with the report settings ``p`` and the inputs the rule declares."""
    write_report(params=p, inputs=declared(p, takes), out=Layout(str(root)).report())


def browse(html_path: Path, tmp_path: Path) -> tuple[dict, str]:
    """Open a probed copy of the report in Chromium; return the probe's findings and the browser log."""
    page = html_path.read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>", "<head>" + PROBE_HEAD, 1).replace("</body>", PROBE_BODY + "</body>", 1))
    proc = chromium("--virtual-time-budget=10000", "--dump-dom", probed.as_uri(), profile=tmp_path / "chrome")
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the page never finished loading:\n{proc.stderr[-3000:]}"
    return json.loads(html.unescape(found.group(1))), proc.stderr


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict]:
    """A fabricated results tree with its report: its folder and the inputs the report rule declares."""
    root = tmp_path_factory.mktemp("results")
    p = params(root)
    takes = fabricate(root, p)
    render(root, p, takes)
    return root, declared(p, takes)


@pytest.fixture(scope="module")
def report(tree) -> Path:
    return tree[0]


def result(root: Path, exp: str, dataset: str = MAIN, name: str = "metrics.json") -> Path:
    return Path(Layout(str(root)).result(name, exp, dataset, "test"))


def prose(page: str) -> str:
    """The page with its whitespace collapsed, as a browser shows its text (the template wraps long lines)."""
    return " ".join(page.split())


def test_report_opens_in_a_browser_with_every_section_and_image(report, tmp_path):
    probe, log = browse(report / "report.html", tmp_path)
    assert probe["sections"] == SECTIONS
    assert probe["broken"] == [] and probe["images"] >= 15
    assert probe["errors"] == []
    console = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []


def test_report_is_self_contained(report):
    html = (report / "report.html").read_text()
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', html)
    assert "<link" not in html and "<script" not in html and "@import" not in html
    assert html.count('src="data:image/png;base64,') + html.count('src="data:image/jpeg;base64,') == html.count("<img")


def test_report_shows_the_results_numbers_and_provenance(report):
    html = (report / "report.html").read_text()
    m = json.loads(result(report, "trained").read_text())
    assert f"{m['iou']:.4f}" in html and f"{m['iou_std']:.4f}" in html
    text = prose(html)
    assert "official Ego-Exo4D correspondence challenge evaluator protocol" in text
    assert "Dataset tabletop (synthetic)" in text and "Data source: synthetic." in text and "Untrained:" in text
    assert "undecodable mask" in html and "empty object_masks" in html  # counted skips from the stages
    assert re.search(
        r"<td>pairs, ego-&gt;exo</td>\s*<td>ego mask at a frame not annotated in the exo camera</td>\s*<td>3</td>", html
    )
    assert "reference: random" in html and "ceiling (best proposal IoU)" in html
    assert "By occlusion (synthetic ground-truth visible fraction in ego)" in html
    assert "pairB, frame 0, object cup_1 (absent in ego): untrained says" in html
    assert "Skipped masks" in html
    # each photo-pair dataset the experiments are scored on: their results and its reference predictors'
    for dataset in PHOTO_SETS:
        assert f"Dataset {dataset} ({dataset}), scored only" in text
        m = json.loads(result(report, "trained", dataset).read_text())
        ref = Layout(str(report)).data(dataset).reference("metrics.json", "all", "classical", "test", "random")
        assert f"{m['iou']:.4f}" in html and f"{json.loads(Path(ref).read_text())['iou']:.4f}" in html
    assert f"{len(PAIRS)} takes ({len(PAIRS)} frames), every one a test take." in text  # the photos dataset
    assert f"Real photographs: {len(PAIRS)} photo pairs cut from one real rectified stereo pair (Middlebury 2014" in text
    # each set: a metrics row for the reference, and one paired-difference row per experiment against it
    assert html.count("reference: random (classical)") == 6
    for dataset in PHOTO_SETS:
        a, b = (pd.read_parquet(result(report, e, dataset, "samples.parquet")) for e in ("untrained", "trained"))
        j = a[a.ego_present].merge(b, on=["take_uid", "object", "exo_cam", "ego_cam", "frame"])
        assert f"<td>trained − untrained</td>\n      <td>{(j.iou_y - j.iou_x).mean():+.4f}</td>" in html
    assert html.count("<td>trained − reference: random (classical)</td>") == 2
    # the submission file: its block, against the test takes the take index selected
    submission = html.split('<section id="submission">', 1)[1].split("</section>", 1)[0]
    assert Layout(str(report)).submission("challenge") in submission
    cells = re.findall(r"<td>([^<]*)</td>", submission)
    sub = json.loads(Path(Layout(str(report)).submission("challenge")).read_text())
    assert cells[:5] == ["exo-ego", "trained", MAIN, str(len(sub["exo-ego"]["results"])), "1"]


def shown_with_ci(m: dict, key: str) -> str:
    lo, hi = m["ci95"][key]
    return f"{m[key]:.4f} [{lo:.3f}, {hi:.3f}]"


def test_report_shows_every_metric_with_its_interval(tree):
    report, inputs = tree
    page = (report / "report.html").read_text()
    assert "95 % confidence interval in brackets" in prose(page) and "resamples whole takes" in prose(page)
    # every metrics file the report reads: each experiment's on each dataset, each reference predictor's
    paths = [Path(f) for f in inputs["results"] + inputs["references"] if f.endswith("metrics.json")]
    # tabletop: 4 experiments, references on the frame and object splits and the ego->exo one; each photo set: 2 + 1
    assert len(paths) == 4 + 3 + 2 * (2 + 1)
    for path in paths:
        m = json.loads(path.read_text())
        for key in ("iou", "shape_acc", "location_score"):
            assert shown_with_ci(m, key) in page, (path, key)
        bal = m["ci95"]["existence_balanced_acc"]
        assert f"{m['existence_balanced_acc']:.4f} " + (f"[{bal[0]:.3f}, {bal[1]:.3f}]" if bal else "[n/a]") in page
    # breakdown, presence and recall tables carry intervals too
    for title in ("By ego presence", "By object size", "By scenario", "Proposal recall"):
        section = page[page.index(title) :]
        section = section[: section.index("</table>")]
        assert re.search(r"<td>\d\.\d{4} \[\d\.\d{3}, \d\.\d{3}\]</td>", section), title
    # same splits and samples: the paired comparison, with a verdict
    verdict = re.search(rf'id="comparison-verdict-{MAIN}-1">(.*?)</p>', page, re.S).group(1)
    assert "Paired comparison" in verdict and "paired bootstrap interval over takes [" in verdict
    assert re.search(r"the difference is (not )?distinguishable from zero at 95 %", verdict)


def test_comparison_of_different_sample_sets_is_unpaired(tmp_path):
    root = tmp_path / "r"
    p = params(root, photo_sets=False)
    takes = fabricate(root, p)
    f = result(root, "trained", name="samples.parquet")
    d = pd.read_parquet(f)
    d[d.take_uid != takes[MAIN][0]].to_parquet(f)  # as if another split had scored only some of the takes
    render(root, p, takes)
    page = (root / "report.html").read_text()
    verdict = re.search(rf'id="comparison-verdict-{MAIN}-1">(.*?)</p>', page, re.S).group(1)
    assert "Unpaired comparison:" in verdict and "unpaired bootstrap interval" in verdict
    assert re.search(
        r"interval \(each experiment's takes resampled independently\)\s+\[[-+]\d\.\d{4}, [-+]\d\.\d{4}\]", verdict
    )
    assert re.search(r"the difference is (not )?distinguishable from zero at 95 %", verdict)


def samples_table(n: int, takes: int, iou, **columns) -> pd.DataFrame:
    """``n`` present samples of one object spread evenly over ``takes`` takes, with their ``iou`` (and ``columns``)."""
    return pd.DataFrame(
        {
            "take_uid": np.repeat([f"t{i}" for i in range(takes)], n // takes),
            "object": "cup_0",
            "exo_cam": "cam01",
            "ego_cam": "aria01_214-1",
            "frame": np.arange(n),
            "ego_present": True,
            "iou": iou,
            **columns,
        }
    )


def test_compare_iou_paired_interval_excludes_zero_for_a_consistent_gain():
    from omama.evaluation.metrics import Bootstrap
    from omama.report.sections import compare_iou
    from omama.report.tables import SAMPLE_KEY

    rng = np.random.default_rng(0)
    n = 240
    a = samples_table(n, 12, rng.random(n))
    b = a.assign(iou=a.iou + 0.02)
    j = a.merge(b, on=SAMPLE_KEY, suffixes=("_a", "_b")).assign(delta=lambda d: d.iou_b - d.iou_a)
    c = compare_iou(a, b, j, Bootstrap(resamples=1000, level=0.95, seed=1))
    assert c["paired"] and c["diff"] == "+0.0200" and c["ci"] == "[+0.0200, +0.0200]"
    assert c["verdict"] == "the difference is distinguishable from zero at 95 %"
    b2 = b.iloc[: n // 2]  # not the same samples: unpaired, and 0.02 is lost in the spread between samples
    c2 = compare_iou(a, b2, j.iloc[: n // 2], Bootstrap(resamples=1000, level=0.95, seed=1))
    assert not c2["paired"] and c2["verdict"] == "the difference is not distinguishable from zero at 95 %"


def test_paired_differences_table_shows_the_iou_interval_not_the_existence_one():
    """The per-dataset table once held two columns of one name, so the existence interval stood in the IoU
    interval's place (motorcycle: -0.039 [+0.0000, +0.0000], 'distinguishable')."""
    from omama.evaluation.metrics import Bootstrap
    from omama.report.sections import paired_differences

    rng = np.random.default_rng(0)
    n = 120
    a = samples_table(n, 6, rng.random(n) * 0.5, pred_exists=True, shape=0.5, location=0.1)
    b = a.assign(iou=a.iou + rng.normal(0.1, 0.1, n))
    row = paired_differences([("a", "b")], {"a": a, "b": b}, Bootstrap(resamples=500, level=0.95, seed=0)).iloc[0]
    assert list(row.index).count("ΔIoU 95 % interval") == 1
    lo, hi = map(float, re.match(r"\[([-+]\d\.\d{4}), ([-+]\d\.\d{4})\] \(paired\)", row["ΔIoU 95 % interval"]).groups())
    assert lo < float(row["ΔIoU"]) < hi and lo > 0
    assert row["Δ existence 95 % interval (paired)"] == "n/a"  # every object present: no balanced accuracy


def test_screenshot_is_not_blank(report, tmp_path):
    shot = tmp_path / "shot.png"
    chromium(
        "--hide-scrollbars",
        "--window-size=1280,2400",
        f"--screenshot={shot}",
        (report / "report.html").as_uri(),
        profile=tmp_path / "chrome",
    )
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape == (2400, 1280) and img.std() > 20


def test_real_data_report_states_source_and_occlusion_stand_in(tmp_path):
    root = tmp_path / "r"
    cfg = config(root, photo_sets=False, dataset="health", entry={"kind": "egoexo"})
    cfg["backbones"] = {"dinov2-b": {"kind": "dinov2", "weights": "facebook/dinov2-with-registers-base"}}
    for x in cfg["experiments"].values():
        x["backbone"] = "dinov2-b"
    p = report_params(validate(cfg))
    takes = fabricate(root, p)
    d = Layout(str(root)).data("health")
    for t in takes["health"]:  # no feature store to describe the backbone: the config's weights do
        Path(d.features("dinov2-b", t)).rename(f"{d.features('dinov2-b', t)}.x")
    render(root, p, takes)
    html = prose((root / "report.html").read_text())
    assert "Dataset health (egoexo)" in html
    assert "<b>Dataset kind:</b> egoexo." in html and "Data source: synthetic" not in html
    assert "Untrained:" not in html
    assert "This dataset carries no occlusion ground truth" in html
    # no experiment is scored on a photo-pair dataset: the report has no section for one, nor a link to it
    assert "scored only" not in html and "By occlusion (synthetic" not in html
    assert not any(f'id="{s}"' in html or f'href="#{s}"' in html for s in PHOTO_SETS)


def test_malformed_metrics_file_is_named(tmp_path):
    root = tmp_path / "r"
    p = params(root, photo_sets=False)
    takes = fabricate(root, p)
    bad = result(root, "trained")
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=rf"malformed metrics file {re.escape(str(bad))}"):
        render(root, p, takes)
    assert not (root / "report.html").exists()


def test_report_without_present_samples_comparison_or_references(tmp_path):
    root = tmp_path / "r"
    p = params(root, photo_sets=False)
    takes = fabricate(root, p)
    for e in EXPERIMENTS:
        f = result(root, e, name="samples.parquet")
        d = pd.read_parquet(f)
        d.assign(ego_present=False, iou=np.nan).to_parquet(f)
    render(root, {**p, "compare": [], "references": []}, takes)
    page = (root / "report.html").read_text()
    assert page.count("No sample of this experiment has the object present in ego") == 3  # the exo->ego ones
    assert "Set <code>report.compare</code> to pairs of experiments" in page and "reference:" not in page


@pytest.mark.slow
def test_report_of_a_real_tiny_run(tiny_run, tmp_path):
    r = tiny_run / "results"
    probe, _ = browse(r / "report.html", tmp_path)
    # two exo->ego experiments, no existence head, no submission; both scored on the generated photo pairs too
    shown = [s for s in SECTIONS if s not in (f"{MAIN}-directions", f"{MAIN}-existence", "motorcycle", "submission")]
    assert probe["sections"] == shown and probe["broken"] == [] and probe["errors"] == []
    page = (r / "report.html").read_text()
    for e in ("untrained", "trained-frame"):
        m = json.loads(result(r, e, "photos").read_text())
        assert f"{m['iou']:.4f}" in page
    assert "pair_001, frame 0, object" in page and "Training curves" in page and "tiny-dinov2" in page
    stages = {p.parts[0] for p in (r / "benchmarks").rglob("*.tsv") for p in [p.relative_to(r / "benchmarks")]}
    assert {"extract", "features", "train", "predict"} <= {s.removesuffix(".tsv") for s in stages}
    for s in ("extract", "train", "predict"):
        assert f"<td>{s}</td>" in page
    for e in ("untrained", "trained-frame"):  # the predictions on the photo pairs are timed too
        assert Path(
            Layout(str(r)).benchmark("predict", "exp", "dataset", "subset").format(exp=e, dataset="photos", subset="test")
        ).is_file()
    jobs = [p for p in (r / "benchmarks").rglob("*.tsv") if p != r / "benchmarks" / "report.tsv"]
    assert f"benchmark files of {len(jobs)} jobs" in page  # every job of the run is timed (declared inputs)
    # every metrics.json of the run (experiments, references, photo pairs) has its intervals, shown in the report
    paths = sorted(r.rglob("metrics.json"))
    assert len(paths) == 6  # 2 experiments, 1 reference; the photo pairs: both experiments and its reference
    for path in paths:
        m = json.loads(path.read_text())
        assert m["bootstrap"]["resamples"] == 1000 and m["bootstrap"]["level"] == 0.95
        assert set(m["ci95"]) == {"iou", "shape_acc", "location_score", "existence_balanced_acc"}
        for key, ci in m["ci95"].items():
            if ci is None:  # only when no resample defines it (no present frame, or one true existence class)
                assert m["bootstrap"]["undefined"][key] == 1000, (path, key)
                continue
            assert ci[0] - 1e-12 <= m[key] <= ci[1] + 1e-12, (path, key, m[key], ci)
        if m["ci95"]["iou"] is not None:
            assert shown_with_ci(m, "iou") in page, path
    assert sum(json.loads(p.read_text())["ci95"]["iou"] is not None for p in paths) >= 2
    verdict = re.search(rf'id="comparison-verdict-{MAIN}-1">(.*?)</p>', page, re.S).group(1)
    assert re.search(r"the difference is (not )?distinguishable from zero at 95 %|cannot be compared", verdict)


def test_a_damaged_frame_image_is_named(tmp_path):
    """A frame JPEG cut short is an error naming take, camera and frame, not a bare decoder error."""
    from omama.io import FrameError
    from omama.report.overlays import Frames

    d = Layout(str(tmp_path)).data(MAIN)
    path = Path(d.image("take-x", "cam01", 30))
    path.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(path, quality=95)
    assert Frames(d).image("take-x", "cam01", 30).shape == (48, 64, 3)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(FrameError, match=r"cannot decode frame image for take 'take-x', camera 'cam01', frame 30"):
        Frames(d).image("take-x", "cam01", 30)


def test_report_reads_only_its_declared_inputs(tmp_path):
    """A file the report rule does not declare is an error naming it, never read behind the rule's back;
    timings are those of the timing table, the jobs of the workflow's rules that the config knows."""
    root = tmp_path / "r"
    p = params(root)
    takes = fabricate(root, p)
    inputs = declared(p, takes)
    r = Layout(str(root))
    for kind, missing in (
        ("history", r.history("trained")),
        ("frames", r.data(MAIN).images(takes[MAIN][0])),
        ("results", r.result("samples.parquet", "trained", "photos", "test")),
        ("existence", r.existence("calibration.json", "trained-head")),
        ("submissions", r.submission("challenge")),
        ("timing", r.timing()),
    ):
        with pytest.raises(ValueError, match=f"report would read {re.escape(missing)}.*does not declare"):
            write_report(params=p, inputs={**inputs, kind: [f for f in inputs[kind] if f != missing]}, out=r.report())
        assert not Path(r.report()).exists()
    # the fabricated jobs: extract x2, features, train, predict on each photo set; a removed experiment's train is left out
    write_report(params=p, inputs=inputs, out=r.report())
    timing = Path(r.report()).read_text().split('<section id="timing">', 1)[1].split("</section>", 1)[0]
    assert "benchmark files of 6 jobs" in timing
    assert all(f"<td>{s}</td>" in timing for s in ("extract", "features", "train", "predict"))
    # a timing table of the features job alone (as if the workflow had only that rule, on one take)
    collect(
        benchmarks=r.benchmarks,
        patterns={"features": patterns(r)["features"]},
        known={"take": [takes[MAIN][0]]},
        out=r.timing(),
    )
    write_report(params=p, inputs=inputs, out=r.report())
    timing = Path(r.report()).read_text().split('<section id="timing">', 1)[1].split("</section>", 1)[0]
    assert "benchmark files of 1 jobs" in timing and "<td>features</td>" in timing
    assert "<td>extract</td>" not in timing and "<td>train</td>" not in timing
