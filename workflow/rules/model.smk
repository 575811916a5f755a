# rules: model -- train the matching head per experiment, predict + evaluate per subset,
# reference predictors per (split, proposer, subset, predictor).


rule train:
    input:
        unpack(train_inputs),
    output:
        model=f"{RESULTS}/experiments/{{exp}}/model.pt",
        history=f"{RESULTS}/experiments/{{exp}}/train/history.json",
    params:
        experiment=lambda wc: matching_settings(wc.exp),
        backbone=lambda wc: backbone_config(experiment(wc.exp)["backbone"]),
        proposer=lambda wc: proposer_config(experiment(wc.exp)["proposer"]),
        checkpoints=lambda wc: f"{RESULTS}/experiments/{wc.exp}/train/checkpoints",
    threads: 2
    resources:
        gpu=experiment_gpus,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/train/{{exp}}.log",
    benchmark:
        f"{BENCH}/train/{{exp}}.tsv"
    script:
        "../scripts/train.py"


# existence: head -- the visibility MLP trained after the (frozen) matching head, calibrated on val.
rule train_existence:
    input:
        unpack(model_inputs),
        model=f"{RESULTS}/experiments/{{exp}}/model.pt",
    output:
        model=f"{RESULTS}/experiments/{{exp}}/existence/model.pt",
        calibration=f"{RESULTS}/experiments/{{exp}}/existence/calibration.json",
        history=f"{RESULTS}/experiments/{{exp}}/existence/history.json",
    params:
        backbone=lambda wc: backbone_config(experiment(wc.exp)["backbone"]),
        mode=lambda wc: feature_mode(wc.exp),
        settings=lambda wc: experiment(wc.exp)["existence_train"],
    threads: 2
    resources:
        gpu=experiment_gpus,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/train_existence/{{exp}}.log",
    benchmark:
        f"{BENCH}/train_existence/{{exp}}.tsv"
    script:
        "../scripts/train_existence.py"


rule predict:
    input:
        unpack(model_inputs),
        unpack(predicted_model),
    output:
        predictions=f"{RESULTS}/experiments/{{exp}}/{{subset}}/predictions.json",
        ground_truth=f"{RESULTS}/experiments/{{exp}}/{{subset}}/ground_truth.json",
        samples=f"{RESULTS}/experiments/{{exp}}/{{subset}}/samples.parquet",
    params:
        backbone=lambda wc: backbone_config(experiment(wc.exp)["backbone"]),
        mode=lambda wc: feature_mode(wc.exp),
    threads: 2
    resources:
        gpu=experiment_gpus,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/predict/{{exp}}/{{subset}}.log",
    benchmark:
        f"{BENCH}/predict/{{exp}}/{{subset}}.tsv"
    script:
        "../scripts/predict.py"


rule evaluate:
    input:
        predictions=f"{RESULTS}/experiments/{{exp}}/{{subset}}/predictions.json",
        ground_truth=f"{RESULTS}/experiments/{{exp}}/{{subset}}/ground_truth.json",
    output:
        metrics=f"{RESULTS}/experiments/{{exp}}/{{subset}}/metrics.json",
    params:
        bootstrap=bootstrap_config(),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/evaluate/{{exp}}/{{subset}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{exp}}/{{subset}}.tsv"
    script:
        "../scripts/evaluate.py"


rule reference:
    input:
        split=f"{RESULTS}/splits/{{split}}.parquet",
        annotations=lambda wc: take_files(f"{RESULTS}/frames/{{take}}/annotation.json"),
        proposals=lambda wc: all_proposals(wc.proposer),
    output:
        samples=f"{RESULTS}/reference/{{split}}/{{proposer}}/{{subset}}/{{predictor}}/samples.parquet",
        metrics=f"{RESULTS}/reference/{{split}}/{{proposer}}/{{subset}}/{{predictor}}/metrics.json",
    params:
        seed=config["evaluate"]["seed"],
        bootstrap=bootstrap_config(),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/reference/{{split}}/{{proposer}}/{{subset}}/{{predictor}}.log",
    benchmark:
        f"{BENCH}/reference/{{split}}/{{proposer}}/{{subset}}/{{predictor}}.tsv"
    script:
        "../scripts/reference.py"
