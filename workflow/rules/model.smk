# rules: model -- train the matching head per experiment, predict + evaluate per subset,
# reference predictors per (split, proposer, subset, predictor).


rule train:
    input:
        unpack(train_inputs),
    output:
        model=f"{RESULTS}/experiments/{{exp}}/model.pt",
        history=f"{RESULTS}/experiments/{{exp}}/train/history.json",
    params:
        experiment=lambda wc: experiment(wc.exp),
        backbone=lambda wc: backbone_config(experiment(wc.exp)["backbone"]),
        proposer=lambda wc: proposer_config(experiment(wc.exp)["proposer"]),
        checkpoints=lambda wc: f"{RESULTS}/experiments/{wc.exp}/train/checkpoints",
        direction=lambda wc: direction(wc.exp),
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


rule predict:
    input:
        unpack(model_inputs),
        model=f"{RESULTS}/experiments/{{exp}}/model.pt",
    output:
        predictions=f"{RESULTS}/experiments/{{exp}}/{{subset}}/predictions.json",
        ground_truth=f"{RESULTS}/experiments/{{exp}}/{{subset}}/ground_truth.json",
        samples=f"{RESULTS}/experiments/{{exp}}/{{subset}}/samples.parquet",
    params:
        backbone=lambda wc: backbone_config(experiment(wc.exp)["backbone"]),
        mode=lambda wc: feature_mode(wc.exp),
        direction=lambda wc: direction(wc.exp),
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
        direction="exo2ego",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/reference/{{split}}/{{proposer}}/{{subset}}/{{predictor}}.log",
    benchmark:
        f"{BENCH}/reference/{{split}}/{{proposer}}/{{subset}}/{{predictor}}.tsv"
    script:
        "../scripts/reference.py"


# The reference predictors in the ego->exo direction: on the exo proposals.
use rule reference as reference_ego2exo with:
    input:
        split=f"{RESULTS}/splits/{{split}}.parquet",
        annotations=lambda wc: take_files(f"{RESULTS}/frames/{{take}}/annotation.json"),
        proposals=lambda wc: all_proposals(wc.proposer),
        exo_proposals=lambda wc: take_files(f"{RESULTS}/proposals/{wc.proposer}/exo/{{take}}.parquet"),
    output:
        samples=f"{RESULTS}/reference/ego2exo/{{split}}/{{proposer}}/{{subset}}/{{predictor}}/samples.parquet",
        metrics=f"{RESULTS}/reference/ego2exo/{{split}}/{{proposer}}/{{subset}}/{{predictor}}/metrics.json",
    params:
        seed=config["evaluate"]["seed"],
        bootstrap=bootstrap_config(),
        direction="ego2exo",
    log:
        f"{LOGS}/reference/ego2exo/{{split}}/{{proposer}}/{{subset}}/{{predictor}}.log",
    benchmark:
        f"{BENCH}/reference/ego2exo/{{split}}/{{proposer}}/{{subset}}/{{predictor}}.tsv"
