# rules: report -- the robustness set (photo pairs run as one-frame takes through the same
# feature, proposal, pairs, split and predict rules) and the self-contained report.html.

from omama.report import ReportParams, report_inputs

ROBUST = f"{RESULTS}/robustness"
PHOTOS = config["robustness"]["path"] or f"{ROBUST}/photos"
ROBUSTNESS_ON = bool(config["robustness"]["experiments"]) and bool(
    config["robustness"]["path"] or config["robustness"]["synthetic_pairs"] > 0
)


def robustness_pairs():
    """Pair names of the robustness set (evaluates its index checkpoint)."""
    import json

    with open(checkpoints.robustness_index.get().output.takes) as f:
        return [t["take_uid"] for t in json.load(f)]


def robustness_files(pattern):
    return lambda wc: expand(pattern, take=robustness_pairs(), allow_missing=True)


def report_params():
    return dict(
        results=RESULTS,
        source_kind=config["source"]["kind"],
        experiments=config["experiments"],
        backbones=config["backbones"],
        proposers=config["proposers"],
        subsets=config["evaluate"]["subsets"],
        references=config["evaluate"]["references"],
        compare=config["report"]["compare"],
        overlays=config["report"]["overlays"],
        robustness_experiments=config["robustness"]["experiments"],
        robustness_enabled=ROBUSTNESS_ON,
    )


rule robustness_photos:
    output:
        photos=directory(f"{ROBUST}/photos"),
    params:
        n=config["robustness"]["synthetic_pairs"],
        seed=config["synthetic"]["seed"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/robustness/photos.log",
    benchmark:
        f"{BENCH}/robustness_photos/photos.tsv"
    script:
        "../scripts/robustness_photos.py"


checkpoint robustness_index:
    input:
        photos=PHOTOS,
    output:
        takes=f"{ROBUST}/index/takes.json",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/robustness/index.log",
    benchmark:
        f"{BENCH}/robustness_index/index.tsv"
    script:
        "../scripts/robustness_index.py"


rule robustness_take:
    input:
        photos=PHOTOS,
        takes=f"{ROBUST}/index/takes.json",
    output:
        annotation=f"{ROBUST}/frames/{{take}}/annotation.json",
        images=directory(f"{ROBUST}/frames/{{take}}/images"),
    params:
        jpeg_quality=config["frames"]["jpeg_quality"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/robustness/take/{{take}}.log",
    benchmark:
        f"{BENCH}/robustness_take/{{take}}.tsv"
    script:
        "../scripts/robustness_take.py"


use rule features as robustness_features with:
    input:
        annotation=f"{ROBUST}/frames/{{take}}/annotation.json",
        images=f"{ROBUST}/frames/{{take}}/images",
    output:
        store=directory(f"{ROBUST}/features/{{backbone}}/{{take}}.zarr"),
    log:
        f"{LOGS}/robustness/features/{{backbone}}/{{take}}.log",
    benchmark:
        f"{BENCH}/robustness_features/{{backbone}}/{{take}}.tsv"


use rule proposals as robustness_proposals with:
    input:
        annotation=f"{ROBUST}/frames/{{take}}/annotation.json",
        images=f"{ROBUST}/frames/{{take}}/images",
    output:
        proposals=f"{ROBUST}/proposals/{{proposer}}/{{take}}.parquet",
        recall=f"{ROBUST}/proposals/{{proposer}}/{{take}}.recall.parquet",
    log:
        f"{LOGS}/robustness/proposals/{{proposer}}/{{take}}.log",
    benchmark:
        f"{BENCH}/robustness_proposals/{{proposer}}/{{take}}.tsv"


use rule pairs as robustness_pairs with:
    input:
        takes=f"{ROBUST}/index/takes.json",
        annotations=robustness_files(f"{ROBUST}/frames/{{take}}/annotation.json"),
    output:
        pairs=f"{ROBUST}/pairs.parquet",
        summary=f"{ROBUST}/pairs.json",
    log:
        f"{LOGS}/robustness/pairs.log",
    benchmark:
        f"{BENCH}/robustness_pairs/pairs.tsv"


# Every pair is a test sample: a take-level split with all of the weight on test.
use rule split as robustness_split with:
    input:
        pairs=f"{ROBUST}/pairs.parquet",
    output:
        split=f"{ROBUST}/splits/{{split}}.parquet",
        diagnostics=f"{ROBUST}/splits/{{split}}.json",
    params:
        ratios=[0, 0, 1],
        seed=0,
    log:
        f"{LOGS}/robustness/split/{{split}}.log",
    benchmark:
        f"{BENCH}/robustness_split/{{split}}.tsv"


def robustness_model_inputs(wc):
    """What ``predict`` reads for an experiment, from the robustness tree (its head from the main run)."""
    e = experiment(wc.exp)
    pairs = robustness_pairs()
    files = {
        "split": f"{ROBUST}/splits/take.parquet",
        "annotations": expand(f"{ROBUST}/frames/{{take}}/annotation.json", take=pairs),
        "proposals": expand(f"{ROBUST}/proposals/{e['proposer']}/{{take}}.parquet", take=pairs),
        "model": f"{RESULTS}/experiments/{wc.exp}/model.pt",
    }
    if feature_mode(wc.exp) == "on-the-fly":
        files["images"] = expand(f"{ROBUST}/frames/{{take}}/images", take=pairs)
    else:
        files["features"] = expand(f"{ROBUST}/features/{e['backbone']}/{{take}}.zarr", take=pairs)
    return files


use rule predict as robustness_predict with:
    input:
        unpack(robustness_model_inputs),
    output:
        predictions=f"{ROBUST}/experiments/{{exp}}/{{subset}}/predictions.json",
        ground_truth=f"{ROBUST}/experiments/{{exp}}/{{subset}}/ground_truth.json",
        samples=f"{ROBUST}/experiments/{{exp}}/{{subset}}/samples.parquet",
    log:
        f"{LOGS}/robustness/predict/{{exp}}/{{subset}}.log",
    benchmark:
        f"{BENCH}/robustness_predict/{{exp}}/{{subset}}.tsv"


use rule evaluate as robustness_evaluate with:
    input:
        predictions=f"{ROBUST}/experiments/{{exp}}/{{subset}}/predictions.json",
        ground_truth=f"{ROBUST}/experiments/{{exp}}/{{subset}}/ground_truth.json",
    output:
        metrics=f"{ROBUST}/experiments/{{exp}}/{{subset}}/metrics.json",
    log:
        f"{LOGS}/robustness/evaluate/{{exp}}/{{subset}}.log",
    benchmark:
        f"{BENCH}/robustness_evaluate/{{exp}}/{{subset}}.tsv"


rule report:
    input:
        unpack(lambda wc: report_inputs(
            ReportParams.from_dict(report_params()),
            selected_takes(),
            robustness_pairs() if ROBUSTNESS_ON else None,
        )),
    output:
        html=f"{RESULTS}/report.html",
    params:
        report=report_params(),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCH}/report.tsv"
    script:
        "../scripts/report.py"
