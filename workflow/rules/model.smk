# rules: model -- train the matching head per experiment, predict + evaluate per subset,
# reference predictors per (split, proposer, subset, predictor).


# Each rule's settings: its params, and the settings record its jobs read (common.smk: settings).
TRAIN = dict(
    experiment=lambda wc: matching_settings(wc.exp),
    backbone=lambda wc: backbone_config(experiment(wc.exp)["backbone"]),
    proposer=lambda wc: proposer_config(experiment(wc.exp)["proposer"]),
    checkpoints=lambda wc: L.checkpoints(wc.exp),
    direction=lambda wc: direction(wc.exp),
    threads=COMPUTE_THREADS,
)
TRAIN_EXISTENCE = dict(
    backbone=lambda wc: backbone_config(experiment(wc.exp)["backbone"]),
    mode=lambda wc: feature_mode(wc.exp),
    settings=lambda wc: experiment(wc.exp)["existence_train"],
    direction=lambda wc: direction(wc.exp),
    threads=COMPUTE_THREADS,
)
PREDICT = dict(
    backbone=lambda wc: backbone_config(experiment(wc.exp)["backbone"]),
    mode=lambda wc: feature_mode(wc.exp),
    direction=lambda wc: direction(wc.exp),
    matcher=lambda wc: experiment(wc.exp)["matcher"],
    threads=COMPUTE_THREADS,
)
EVALUATE = dict(bootstrap=bootstrap_config())
REFERENCE = dict(seed=config["evaluate"]["seed"], bootstrap=bootstrap_config())


rule train:
    input:
        unpack(train_inputs),
        settings=settings("train/{exp}", TRAIN),
    output:
        model=L.model(),
        history=L.history(),
    log:
        L.log("train/{exp}"),
    benchmark:
        L.benchmark("train/{exp}")
    priority: 1
    conda:
        CONDA_ENV
    threads: COMPUTE_THREADS
    resources:
        gpu=experiment_gpus,
    params:
        **TRAIN,
    script:
        "../scripts/train.py"


# existence: head -- the visibility MLP trained after the (frozen) matching head, calibrated on val.
rule train_existence:
    input:
        unpack(model_inputs),
        model=rules.train.output.model,
        settings=settings("train_existence/{exp}", TRAIN_EXISTENCE),
    output:
        model=L.existence("model.pt"),
        calibration=L.existence("calibration.json"),
        history=L.existence("history.json"),
    log:
        L.log("train_existence/{exp}"),
    benchmark:
        L.benchmark("train_existence/{exp}")
    conda:
        CONDA_ENV
    threads: COMPUTE_THREADS
    resources:
        gpu=experiment_gpus,
    params:
        **TRAIN_EXISTENCE,
    script:
        "../scripts/train_existence.py"


rule predict:
    input:
        unpack(model_inputs),
        unpack(predicted_model),
        settings=settings("predict/{exp}", PREDICT),
    output:
        predictions=L.result("predictions.json"),
        ground_truth=L.result("ground_truth.json"),
        samples=L.result("samples.parquet"),
    log:
        L.log("predict/{exp}/{subset}"),
    benchmark:
        L.benchmark("predict/{exp}/{subset}")
    conda:
        CONDA_ENV
    threads: COMPUTE_THREADS
    resources:
        gpu=experiment_gpus,
    params:
        **PREDICT,
    script:
        "../scripts/predict.py"


rule evaluate:
    input:
        predictions=rules.predict.output.predictions,
        ground_truth=rules.predict.output.ground_truth,
        settings=settings("evaluate", EVALUATE),
    output:
        metrics=L.result("metrics.json"),
    log:
        L.log("evaluate/{exp}/{subset}"),
    benchmark:
        L.benchmark("evaluate/{exp}/{subset}")
    conda:
        CONDA_ENV
    params:
        **EVALUATE,
    script:
        "../scripts/evaluate.py"


rule reference:
    input:
        split=rules.split.output.split,
        annotations=lambda wc: take_files(L.annotation()),
        proposals=lambda wc: all_proposals(wc.proposer),
        settings=settings("reference", REFERENCE),
    output:
        samples=L.reference("samples.parquet"),
        metrics=L.reference("metrics.json"),
    log:
        L.log("reference/{split}/{proposer}/{subset}/{predictor}"),
    benchmark:
        L.benchmark("reference/{split}/{proposer}/{subset}/{predictor}")
    conda:
        CONDA_ENV
    params:
        **REFERENCE,
        direction="exo2ego",
    script:
        "../scripts/reference.py"


# The reference predictors in the ego->exo direction: on the exo proposals.
use rule reference as reference_ego2exo with:
    input:
        split=rules.split.output.split,
        annotations=lambda wc: take_files(L.annotation()),
        proposals=lambda wc: all_proposals(wc.proposer),
        exo_proposals=lambda wc: take_files(L.exo_proposals(wc.proposer)),
        settings=settings("reference", REFERENCE),
    output:
        samples=L.reference_ego2exo("samples.parquet"),
        metrics=L.reference_ego2exo("metrics.json"),
    log:
        L.log("reference/ego2exo/{split}/{proposer}/{subset}/{predictor}"),
    benchmark:
        L.benchmark("reference/ego2exo/{split}/{proposer}/{subset}/{predictor}")
    params:
        **REFERENCE,
        direction="ego2exo",


# The one file the challenge server takes: the exo-ego and/or ego-exo blocks of the named experiments' test predictions.
rule submission:
    input:
        unpack(submission_inputs),
    output:
        submission=L.submission(),
    log:
        L.log("submission/{name}"),
    benchmark:
        L.benchmark("submission/{name}")
    conda:
        CONDA_ENV
    script:
        "../scripts/submission.py"
