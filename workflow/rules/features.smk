# rules: features -- per (dataset, backbone, take) Zarr v3 feature store; per (dataset, proposer, take) mask
# proposals (ego; exo too for ego2exo experiments); each backbone's and proposer's weights fetched first.


# Each rule's settings: its params, and the settings record its jobs read (common.smk: settings).
FEATURES = dict(cfg=lambda wc: backbone_config(wc.backbone), threads=COMPUTE_THREADS)
BACKBONE_WEIGHTS = dict(cfg=lambda wc: backbone_config(wc.backbone))
PROPOSER = dict(cfg=lambda wc: proposer_config(wc.proposer), threads=COMPUTE_THREADS)


# Features and ego proposals first (priority): every training job waits on them, and training is
# the long pole of a run; exo proposals (ego->exo training waits on them) come with the trainings,
# references and predictions fill the gaps.
rule features:
    input:
        annotation=D.annotation(),
        images=D.images(),
        weights=lambda wc: weights_record(wc.backbone),
        settings=settings("features/{backbone}", FEATURES),
    output:
        store=directory(D.features()),
    log:
        L.log("features", "dataset", "backbone", "take"),
    benchmark:
        L.benchmark("features", "dataset", "backbone", "take")
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


# A backbone's pretrained weights into torch's checkpoint cache, when its kind fetches them; on the
# submitting host (internet).
rule torch_weights:
    input:
        settings=settings("torch_weights/{backbone}", BACKBONE_WEIGHTS),
    output:
        record=L.weights(),
    log:
        L.log("torch_weights", "backbone"),
    benchmark:
        L.benchmark("torch_weights", "backbone")
    localrule: True
    conda:
        CONDA_ENV
    resources:
        downloads=1,
    params:
        **BACKBONE_WEIGHTS,
    script:
        "../scripts/torch_weights.py"


# A proposer's checkpoint into the same cache, when its kind fetches one (sam: mobile_sam.pt); on the
# submitting host (internet).
rule proposer_weights:
    input:
        settings=settings("proposer_weights/{proposer}", PROPOSER),
    output:
        record=L.proposer_weights(),
    log:
        L.log("proposer_weights", "proposer"),
    benchmark:
        L.benchmark("proposer_weights", "proposer")
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
        annotation=D.annotation(),
        images=D.images(),
        weights=lambda wc: proposer_weights_record(wc.proposer),
        settings=settings("proposals/{proposer}", PROPOSER),
    output:
        proposals=D.proposals(),
        recall=D.recall(),
    log:
        L.log("proposals", "dataset", "proposer", "take"),
    benchmark:
        L.benchmark("proposals", "dataset", "proposer", "take")
    priority: 2
    conda:
        CONDA_ENV
    threads: COMPUTE_THREADS
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
        proposals=D.exo_proposals(),
        recall=D.exo_recall(),
    log:
        L.log("exo_proposals", "dataset", "proposer", "take"),
    benchmark:
        L.benchmark("exo_proposals", "dataset", "proposer", "take")
    priority: 1
    params:
        **PROPOSER,
        view="exo",
