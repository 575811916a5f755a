# rules: model -- train the matching head per experiment (and its existence head), predict + evaluate per
# (experiment, dataset, subset), reference predictors per (dataset, split, proposer, subset), challenge files.


# Each rule's settings: its params, and the settings record its jobs read (common.smk: settings). An
# experiment's params are the settings that stage reads (omama.experiment.Experiment.settings).
TRAIN = dict(experiment=lambda wc: experiment(wc.exp).settings("train"), threads=COMPUTE_THREADS)
TRAIN_EXISTENCE = dict(experiment=lambda wc: experiment(wc.exp).settings("existence"), threads=COMPUTE_THREADS)
TEMPORAL = dict(experiment=lambda wc: experiment(wc.exp).settings("temporal"), threads=COMPUTE_THREADS)
PREDICT = dict(experiment=lambda wc: experiment(wc.exp).settings("predict"), threads=COMPUTE_THREADS)
EVALUATE = dict(bootstrap=bootstrap_config())
REFERENCES = config["evaluate"]["references"]
REFERENCE = dict(seed=config["evaluate"]["seed"], bootstrap=bootstrap_config(), predictors=REFERENCES)


rule train:
    input:
        unpack(train_inputs),
        settings=settings("train/{exp}", TRAIN),
    output:
        model=L.model(),
        history=L.history(),
    log:
        L.log("train", "exp"),
    benchmark:
        L.benchmark("train", "exp")
    priority: 1
    conda:
        CONDA_ENV
    threads: COMPUTE_THREADS
    resources:
        gpu=experiment_gpus,
    params:
        **TRAIN,
        checkpoints=lambda wc: L.checkpoints(wc.exp),
    script:
        "../scripts/train.py"


# existence: head -- the visibility MLP trained after the (frozen) matching head, calibrated on val.
rule train_existence:
    input:
        unpack(existence_inputs),
        settings=settings("train_existence/{exp}", TRAIN_EXISTENCE),
    output:
        model=L.existence("model.pt"),
        calibration=L.existence("calibration.json"),
        history=L.existence("history.json"),
    log:
        L.log("train_existence", "exp"),
    benchmark:
        L.benchmark("train_existence", "exp")
    conda:
        CONDA_ENV
    threads: COMPUTE_THREADS
    resources:
        gpu=experiment_gpus,
    params:
        **TRAIN_EXISTENCE,
    script:
        "../scripts/train_existence.py"


# temporal: memory -- the fusion of the model's own earlier choices, fitted on the validation takes.
rule temporal:
    input:
        unpack(temporal_inputs),
        settings=settings("temporal/{exp}", TEMPORAL),
    output:
        fit=L.temporal(),
    log:
        L.log("temporal", "exp"),
    benchmark:
        L.benchmark("temporal", "exp")
    conda:
        CONDA_ENV
    threads: COMPUTE_THREADS
    resources:
        gpu=experiment_gpus,
    params:
        **TEMPORAL,
    script:
        "../scripts/temporal.py"


rule predict:
    input:
        unpack(predict_inputs),
        settings=settings("predict/{exp}", PREDICT),
    output:
        predictions=L.result("predictions.json"),
        ground_truth=L.result("ground_truth.json"),
        samples=L.result("samples.parquet"),
    log:
        L.log("predict", "exp", "dataset", "subset"),
    benchmark:
        L.benchmark("predict", "exp", "dataset", "subset")
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
        L.log("evaluate", "exp", "dataset", "subset"),
    benchmark:
        L.benchmark("evaluate", "exp", "dataset", "subset")
    conda:
        CONDA_ENV
    params:
        **EVALUATE,
    script:
        "../scripts/evaluate.py"


# Every reference predictor of one (dataset, split, proposer, subset), in one job.
rule reference:
    input:
        split=D.split(),
        annotations=lambda wc: take_files(L.data(wc.dataset).annotation(), wc.dataset),
        proposals=lambda wc: take_files(L.data(wc.dataset).proposals(wc.proposer), wc.dataset),
        settings=settings("reference", REFERENCE),
    output:
        samples=[D.reference("samples.parquet", predictor=p) for p in REFERENCES],
        metrics=[D.reference("metrics.json", predictor=p) for p in REFERENCES],
    log:
        L.log("reference", "dataset", "split", "proposer", "subset"),
    benchmark:
        L.benchmark("reference", "dataset", "split", "proposer", "subset")
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
        split=D.split(),
        annotations=lambda wc: take_files(L.data(wc.dataset).annotation(), wc.dataset),
        proposals=lambda wc: take_files(L.data(wc.dataset).proposals(wc.proposer), wc.dataset),
        exo_proposals=lambda wc: take_files(L.data(wc.dataset).exo_proposals(wc.proposer), wc.dataset),
        settings=settings("reference", REFERENCE),
    output:
        samples=[D.reference("samples.parquet", predictor=p, direction="ego2exo") for p in REFERENCES],
        metrics=[D.reference("metrics.json", predictor=p, direction="ego2exo") for p in REFERENCES],
    log:
        L.log("reference_ego2exo", "dataset", "split", "proposer", "subset"),
    benchmark:
        L.benchmark("reference_ego2exo", "dataset", "split", "proposer", "subset")
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
        L.log("submission", "name"),
    benchmark:
        L.benchmark("submission", "name")
    conda:
        CONDA_ENV
    script:
        "../scripts/submission.py"
