# rules: features -- per (backbone, take) Zarr v3 feature store; per (proposer, take) ego mask proposals


# Each rule's settings: its params, and the settings record its jobs read (common.smk: settings).
FEATURES = dict(cfg=lambda wc: backbone_config(wc.backbone), threads=COMPUTE_THREADS)
BACKBONE_WEIGHTS = dict(cfg=lambda wc: backbone_config(wc.backbone))
PROPOSER = dict(cfg=lambda wc: proposer_config(wc.proposer))


# Features and ego proposals first (priority): every training job waits on them, and training is
# the long pole of a run; references, exo proposals and photo pairs fill the gaps.
rule features:
    input:
        annotation=rules.extract.output.annotation,
        images=rules.extract.output.images,
        weights=lambda wc: weights_record(wc.backbone),
        settings=settings("features/{backbone}", FEATURES),
    output:
        store=directory(L.features()),
    log:
        L.log("features/{backbone}/{take}"),
    benchmark:
        L.benchmark("features/{backbone}/{take}")
    priority: 2
    conda:
        CONDA_ENV
    threads: lambda wc: 8 if gpus(backbone_config(wc.backbone)) else COMPUTE_THREADS
    resources:
        gpu=lambda wc: gpus(backbone_config(wc.backbone)),
    params:
        **FEATURES,
    script:
        "../scripts/features.py"


# Pretrained torchvision weights into torch's checkpoint cache; on the submitting host (internet).
rule torch_weights:
    input:
        settings=settings("torch_weights/{backbone}", BACKBONE_WEIGHTS),
    output:
        record=L.weights(),
    log:
        L.log("torch_weights/{backbone}"),
    benchmark:
        L.benchmark("torch_weights/{backbone}")
    localrule: True
    conda:
        CONDA_ENV
    resources:
        downloads=1,
    params:
        **BACKBONE_WEIGHTS,
    script:
        "../scripts/torch_weights.py"


# A sam proposer's packaged checkpoint (mobile_sam.pt) into the same cache; on the submitting host (internet).
rule proposer_weights:
    input:
        settings=settings("proposer_weights/{proposer}", PROPOSER),
    output:
        record=L.proposer_weights(),
    log:
        L.log("proposer_weights/{proposer}"),
    benchmark:
        L.benchmark("proposer_weights/{proposer}")
    localrule: True
    conda:
        CONDA_ENV
    resources:
        downloads=1,
    params:
        **PROPOSER,
    script:
        "../scripts/proposer_weights.py"


rule proposals:
    input:
        annotation=rules.extract.output.annotation,
        images=rules.extract.output.images,
        weights=lambda wc: proposer_weights_record(wc.proposer),
        settings=settings("proposals/{proposer}", PROPOSER),
    output:
        proposals=L.proposals(),
        recall=L.recall(),
    log:
        L.log("proposals/{proposer}/{take}"),
    benchmark:
        L.benchmark("proposals/{proposer}/{take}")
    priority: 2
    conda:
        CONDA_ENV
    resources:
        gpu=lambda wc: gpus(proposer_config(wc.proposer)),
    params:
        **PROPOSER,
        view="ego",
    script:
        "../scripts/proposals.py"


# Proposals on every exo camera's frames, for ego2exo experiments (the ego ones above are not redone).
use rule proposals as exo_proposals with:
    output:
        proposals=L.exo_proposals(),
        recall=L.exo_recall(),
    log:
        L.log("proposals/{proposer}/exo/{take}"),
    benchmark:
        L.benchmark("proposals/{proposer}/exo/{take}")
    priority: 0
    params:
        **PROPOSER,
        view="exo",
