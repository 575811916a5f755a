# rules: report -- the robustness set (photo pairs run as one-frame takes through the same
# feature, proposal, pairs, split and predict rules) and the self-contained report.html.

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
        weights=lambda wc: weights_record(wc.backbone),
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
        annotations=lambda wc: take_files(f"{ROBUST}/frames/{{take}}/annotation.json", robustness_pairs()),
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
        unpack(report_files),
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
