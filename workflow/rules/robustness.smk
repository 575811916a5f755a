# rules: robustness -- the photo-pair sets (the robustness set; the motorcycle pairs), run as
# one-frame takes through the same feature, proposal, pairs, split, predict and reference rules.
# Every set ({rset}: robustness, motorcycle) gets its own results tree PHOTO = R/{rset}/.


wildcard_constraints:
    rset=r"robustness|motorcycle",


# Each rule's settings: its params, and the settings record its jobs read (common.smk: settings).
ROBUSTNESS_PHOTOS = dict(
    n=config["robustness"]["synthetic_pairs"],
    photos=config["robustness"]["synthetic_photos"],
    seed=config["synthetic"]["seed"],
)
MOTORCYCLE_PHOTOS = dict(cfg=config["robustness"]["motorcycle"])
ROBUSTNESS_TAKE = dict(jpeg_quality=config["frames"]["jpeg_quality"], max_side=config["robustness"]["max_side"])


rule robustness_photos:
    input:
        settings=settings("robustness_photos", ROBUSTNESS_PHOTOS),
    output:
        photos=directory(L.photo_set("robustness").photos()),
    log:
        L.log("robustness/photos"),
    benchmark:
        L.benchmark("robustness_photos/photos")
    conda:
        CONDA_ENV
    params:
        **ROBUSTNESS_PHOTOS,
    script:
        "../scripts/robustness_photos.py"


# Real photographs: the Middlebury motorcycle stereo pair (shipped with scikit-image), masks
# carried between the views by the true disparity.
rule motorcycle_photos:
    input:
        settings=settings("motorcycle_photos", MOTORCYCLE_PHOTOS),
    output:
        photos=directory(L.photo_set("motorcycle").photos()),
    log:
        L.log("motorcycle/photos"),
    benchmark:
        L.benchmark("motorcycle_photos/photos")
    conda:
        CONDA_ENV
    params:
        **MOTORCYCLE_PHOTOS,
    script:
        "../scripts/motorcycle_photos.py"


checkpoint robustness_index:
    input:
        photos=lambda wc: PHOTO_SETS[wc.rset],
    output:
        takes=PHOTO.index(),
    log:
        L.log("{rset}/index"),
    benchmark:
        L.benchmark("{rset}_index/index")
    conda:
        CONDA_ENV
    script:
        "../scripts/robustness_index.py"


rule robustness_take:
    input:
        photos=lambda wc: PHOTO_SETS[wc.rset],
        pair=pair_files,
        takes=PHOTO.index(),
        settings=settings("robustness_take", ROBUSTNESS_TAKE),
    output:
        annotation=PHOTO.annotation(),
        images=directory(PHOTO.images()),
    log:
        L.log("{rset}/take/{take}"),
    benchmark:
        L.benchmark("{rset}_take/{take}")
    conda:
        CONDA_ENV
    params:
        **ROBUSTNESS_TAKE,
    script:
        "../scripts/robustness_take.py"


use rule features as robustness_features with:
    input:
        annotation=rules.robustness_take.output.annotation,
        images=rules.robustness_take.output.images,
        weights=lambda wc: weights_record(wc.backbone),
        settings=settings("features/{backbone}", FEATURES),
    output:
        store=directory(PHOTO.features()),
    log:
        L.log("{rset}/features/{backbone}/{take}"),
    benchmark:
        L.benchmark("{rset}_features/{backbone}/{take}")


use rule proposals as robustness_proposals with:
    input:
        annotation=rules.robustness_take.output.annotation,
        images=rules.robustness_take.output.images,
        weights=lambda wc: proposer_weights_record(wc.proposer),
        settings=settings("proposals/{proposer}", PROPOSER),
    output:
        proposals=PHOTO.proposals(),
        recall=PHOTO.recall(),
    log:
        L.log("{rset}/proposals/{proposer}/{take}"),
    benchmark:
        L.benchmark("{rset}_proposals/{proposer}/{take}")


use rule pairs as robustness_pairs with:
    input:
        takes=PHOTO.index(),
        annotations=lambda wc: take_files(L.photo_set(wc.rset).annotation(), robustness_pairs(wc.rset)),
    output:
        pairs=PHOTO.pairs(),
        summary=PHOTO.pairs_summary(),
    log:
        L.log("{rset}/pairs"),
    benchmark:
        L.benchmark("{rset}_pairs/pairs")


# Every pair is a test sample: a take-level split with all of the weight on test.
use rule split as robustness_split with:
    input:
        pairs=rules.robustness_pairs.output.pairs,
    output:
        split=PHOTO.split(),
        diagnostics=PHOTO.split_diagnostics(),
    log:
        L.log("{rset}/split/{split}"),
    benchmark:
        L.benchmark("{rset}_split/{split}")
    params:
        ratios=[0, 0, 1],
        seed=0,


use rule predict as robustness_predict with:
    input:
        unpack(robustness_model_inputs),
        settings=settings("predict/{exp}", PREDICT),
    output:
        predictions=PHOTO.result("predictions.json"),
        ground_truth=PHOTO.result("ground_truth.json"),
        samples=PHOTO.result("samples.parquet"),
    log:
        L.log("{rset}/predict/{exp}/{subset}"),
    benchmark:
        L.benchmark("{rset}_predict/{exp}/{subset}")


use rule evaluate as robustness_evaluate with:
    input:
        predictions=rules.robustness_predict.output.predictions,
        ground_truth=rules.robustness_predict.output.ground_truth,
        settings=settings("evaluate", EVALUATE),
    output:
        metrics=PHOTO.result("metrics.json"),
    log:
        L.log("{rset}/evaluate/{exp}/{subset}"),
    benchmark:
        L.benchmark("{rset}_evaluate/{exp}/{subset}")


# The reference predictors on the same pairs and proposals (take split, all test).
use rule reference as robustness_reference with:
    input:
        split=rules.robustness_split.output.split,
        annotations=lambda wc: take_files(L.photo_set(wc.rset).annotation(), robustness_pairs(wc.rset)),
        proposals=lambda wc: take_files(L.photo_set(wc.rset).proposals(wc.proposer), robustness_pairs(wc.rset)),
        settings=settings("reference", REFERENCE),
    output:
        samples=PHOTO.reference("samples.parquet"),
        metrics=PHOTO.reference("metrics.json"),
    log:
        L.log("{rset}/reference/{split}/{proposer}/{subset}/{predictor}"),
    benchmark:
        L.benchmark("{rset}_reference/{split}/{proposer}/{subset}/{predictor}")
