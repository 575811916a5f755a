# rules: features -- per (backbone, take) Zarr v3 feature store; per (proposer, take) ego mask proposals


rule features:
    input:
        annotation=f"{RESULTS}/frames/{{take}}/annotation.json",
        images=f"{RESULTS}/frames/{{take}}/images",
        weights=lambda wc: weights_record(wc.backbone),
    output:
        store=directory(f"{RESULTS}/features/{{backbone}}/{{take}}.zarr"),
    params:
        cfg=lambda wc: backbone_config(wc.backbone),
    threads: lambda wc: 8 if gpus(backbone_config(wc.backbone)) else 2
    resources:
        gpu=lambda wc: gpus(backbone_config(wc.backbone)),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/features/{{backbone}}/{{take}}.log",
    benchmark:
        f"{BENCH}/features/{{backbone}}/{{take}}.tsv"
    script:
        "../scripts/features.py"


# Pretrained torchvision weights into torch's checkpoint cache; on the submitting host (internet).
rule torch_weights:
    localrule: True
    output:
        record=f"{RESULTS}/weights/{{backbone}}.json",
    params:
        cfg=lambda wc: backbone_config(wc.backbone),
    resources:
        downloads=1,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/torch_weights/{{backbone}}.log",
    benchmark:
        f"{BENCH}/torch_weights/{{backbone}}.tsv"
    script:
        "../scripts/torch_weights.py"


rule proposals:
    input:
        annotation=f"{RESULTS}/frames/{{take}}/annotation.json",
        images=f"{RESULTS}/frames/{{take}}/images",
    output:
        proposals=f"{RESULTS}/proposals/{{proposer}}/{{take}}.parquet",
        recall=f"{RESULTS}/proposals/{{proposer}}/{{take}}.recall.parquet",
    params:
        cfg=lambda wc: proposer_config(wc.proposer),
        view="ego",
    resources:
        gpu=lambda wc: gpus(proposer_config(wc.proposer)),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/proposals/{{proposer}}/{{take}}.log",
    benchmark:
        f"{BENCH}/proposals/{{proposer}}/{{take}}.tsv"
    script:
        "../scripts/proposals.py"


# Proposals on every exo camera's frames, for ego2exo experiments (the ego ones above are not redone).
rule exo_proposals:
    input:
        annotation=f"{RESULTS}/frames/{{take}}/annotation.json",
        images=f"{RESULTS}/frames/{{take}}/images",
    output:
        proposals=f"{RESULTS}/proposals/{{proposer}}/exo/{{take}}.parquet",
        recall=f"{RESULTS}/proposals/{{proposer}}/exo/{{take}}.recall.parquet",
    params:
        cfg=lambda wc: proposer_config(wc.proposer),
        view="exo",
    resources:
        gpu=lambda wc: gpus(proposer_config(wc.proposer)),
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/proposals/{{proposer}}/exo/{{take}}.log",
    benchmark:
        f"{BENCH}/proposals/{{proposer}}/exo/{{take}}.tsv"
    script:
        "../scripts/proposals.py"

