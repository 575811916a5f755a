# rules: report -- the photo-pair sets (the robustness set; the motorcycle pairs), run as one-frame
# takes through the same feature, proposal, pairs, split, predict and reference rules, and the
# self-contained report.html.

wildcard_constraints:
    rset=r"robustness|motorcycle",


rule robustness_photos:
    output:
        photos=directory(f"{ROBUST}/photos"),
    params:
        n=config["robustness"]["synthetic_pairs"],
        photos=config["robustness"]["synthetic_photos"],
        seed=config["synthetic"]["seed"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/robustness/photos.log",
    benchmark:
        f"{BENCH}/robustness_photos/photos.tsv"
    script:
        "../scripts/robustness_photos.py"


# Real photographs: the Middlebury motorcycle stereo pair (shipped with scikit-image), masks
# carried between the views by the true disparity.
rule motorcycle_photos:
    output:
        photos=directory(f"{RESULTS}/motorcycle/photos"),
    params:
        cfg=config["robustness"]["motorcycle"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/motorcycle/photos.log",
    benchmark:
        f"{BENCH}/motorcycle_photos/photos.tsv"
    script:
        "../scripts/motorcycle_photos.py"


# Every photo-pair set ({rset}: robustness, motorcycle) gets its own results tree R/{rset}/.
checkpoint robustness_index:
    input:
        photos=lambda wc: PHOTO_SETS[wc.rset],
    output:
        takes=f"{RESULTS}/{{rset}}/index/takes.json",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/{{rset}}/index.log",
    benchmark:
        f"{BENCH}/{{rset}}_index/index.tsv"
    script:
        "../scripts/robustness_index.py"


rule robustness_take:
    input:
        photos=lambda wc: PHOTO_SETS[wc.rset],
        pair=pair_files,
        takes=f"{RESULTS}/{{rset}}/index/takes.json",
    output:
        annotation=f"{RESULTS}/{{rset}}/frames/{{take}}/annotation.json",
        images=directory(f"{RESULTS}/{{rset}}/frames/{{take}}/images"),
    params:
        jpeg_quality=config["frames"]["jpeg_quality"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/{{rset}}/take/{{take}}.log",
    benchmark:
        f"{BENCH}/{{rset}}_take/{{take}}.tsv"
    script:
        "../scripts/robustness_take.py"


use rule features as robustness_features with:
    input:
        annotation=f"{RESULTS}/{{rset}}/frames/{{take}}/annotation.json",
        images=f"{RESULTS}/{{rset}}/frames/{{take}}/images",
        weights=lambda wc: weights_record(wc.backbone),
    output:
        store=directory(f"{RESULTS}/{{rset}}/features/{{backbone}}/{{take}}.zarr"),
    log:
        f"{LOGS}/{{rset}}/features/{{backbone}}/{{take}}.log",
    benchmark:
        f"{BENCH}/{{rset}}_features/{{backbone}}/{{take}}.tsv"


use rule proposals as robustness_proposals with:
    input:
        annotation=f"{RESULTS}/{{rset}}/frames/{{take}}/annotation.json",
        images=f"{RESULTS}/{{rset}}/frames/{{take}}/images",
    output:
        proposals=f"{RESULTS}/{{rset}}/proposals/{{proposer}}/{{take}}.parquet",
        recall=f"{RESULTS}/{{rset}}/proposals/{{proposer}}/{{take}}.recall.parquet",
    log:
        f"{LOGS}/{{rset}}/proposals/{{proposer}}/{{take}}.log",
    benchmark:
        f"{BENCH}/{{rset}}_proposals/{{proposer}}/{{take}}.tsv"


use rule pairs as robustness_pairs with:
    input:
        takes=f"{RESULTS}/{{rset}}/index/takes.json",
        annotations=lambda wc: take_files(f"{RESULTS}/{wc.rset}/frames/{{take}}/annotation.json", robustness_pairs(wc.rset)),
    output:
        pairs=f"{RESULTS}/{{rset}}/pairs.parquet",
        summary=f"{RESULTS}/{{rset}}/pairs.json",
    log:
        f"{LOGS}/{{rset}}/pairs.log",
    benchmark:
        f"{BENCH}/{{rset}}_pairs/pairs.tsv"


# Every pair is a test sample: a take-level split with all of the weight on test.
use rule split as robustness_split with:
    input:
        pairs=f"{RESULTS}/{{rset}}/pairs.parquet",
    output:
        split=f"{RESULTS}/{{rset}}/splits/{{split}}.parquet",
        diagnostics=f"{RESULTS}/{{rset}}/splits/{{split}}.json",
    params:
        ratios=[0, 0, 1],
        seed=0,
    log:
        f"{LOGS}/{{rset}}/split/{{split}}.log",
    benchmark:
        f"{BENCH}/{{rset}}_split/{{split}}.tsv"


use rule predict as robustness_predict with:
    input:
        unpack(robustness_model_inputs),
    output:
        predictions=f"{RESULTS}/{{rset}}/experiments/{{exp}}/{{subset}}/predictions.json",
        ground_truth=f"{RESULTS}/{{rset}}/experiments/{{exp}}/{{subset}}/ground_truth.json",
        samples=f"{RESULTS}/{{rset}}/experiments/{{exp}}/{{subset}}/samples.parquet",
    log:
        f"{LOGS}/{{rset}}/predict/{{exp}}/{{subset}}.log",
    benchmark:
        f"{BENCH}/{{rset}}_predict/{{exp}}/{{subset}}.tsv"


use rule evaluate as robustness_evaluate with:
    input:
        predictions=f"{RESULTS}/{{rset}}/experiments/{{exp}}/{{subset}}/predictions.json",
        ground_truth=f"{RESULTS}/{{rset}}/experiments/{{exp}}/{{subset}}/ground_truth.json",
    output:
        metrics=f"{RESULTS}/{{rset}}/experiments/{{exp}}/{{subset}}/metrics.json",
    log:
        f"{LOGS}/{{rset}}/evaluate/{{exp}}/{{subset}}.log",
    benchmark:
        f"{BENCH}/{{rset}}_evaluate/{{exp}}/{{subset}}.tsv"


# The reference predictors on the same pairs and proposals (take split, all test).
use rule reference as robustness_reference with:
    input:
        split=f"{RESULTS}/{{rset}}/splits/{{split}}.parquet",
        annotations=lambda wc: take_files(f"{RESULTS}/{wc.rset}/frames/{{take}}/annotation.json", robustness_pairs(wc.rset)),
        proposals=lambda wc: take_files(f"{RESULTS}/{wc.rset}/proposals/{wc.proposer}/{{take}}.parquet",
                                        robustness_pairs(wc.rset)),
    output:
        samples=f"{RESULTS}/{{rset}}/reference/{{split}}/{{proposer}}/{{subset}}/{{predictor}}/samples.parquet",
        metrics=f"{RESULTS}/{{rset}}/reference/{{split}}/{{proposer}}/{{subset}}/{{predictor}}/metrics.json",
    log:
        f"{LOGS}/{{rset}}/reference/{{split}}/{{proposer}}/{{subset}}/{{predictor}}.log",
    benchmark:
        f"{BENCH}/{{rset}}_reference/{{split}}/{{proposer}}/{{subset}}/{{predictor}}.tsv"


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
