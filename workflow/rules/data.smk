# rules: data -- per dataset: prepare (generated or downloaded source) -> take index -> per take download
# (kinds that fetch; deleted after extraction) -> extract -> pairs -> splits. The dataset's kind
# (omama.data.kinds, or a plug-in's) does the kind-specific part of each.


# Each rule's settings: its params, and the settings record its jobs read (common.smk: settings); a data stage's
# are the dataset settings it reads (common.smk: dataset_settings).
PREPARE, TAKE_INDEX, DOWNLOAD, EXTRACT = map(dataset_settings, ("prepare", "take_index", "download", "extract"))
# a drawn split's ratios and seed; the official split and "all" draw nothing, so changing them redoes neither
SPLIT = dict(
    split=lambda wc: None if wc.split in ("official", "all") else dataset_cfg(wc.dataset)["split"],
)


# The source of a kind that generates or downloads it first (synthetic takes, photo pairs, BOP scenes,
# Ego-Exo4D metadata). Downloads run on the submitting host (cluster nodes often have no internet).
rule prepare:
    input:
        settings=settings("prepare/{dataset}", PREPARE),
    output:
        source=directory(D.source()),
    log:
        L.log("prepare", "dataset"),
    benchmark:
        L.benchmark("prepare", "dataset")
    localrule: True
    conda:
        CONDA_ENV
    resources:
        downloads=lambda wc: int(kind(wc.dataset).fetches),
    params:
        **PREPARE,
    script:
        "../scripts/prepare.py"


checkpoint take_index:
    input:
        source=lambda wc: kind(wc.dataset).index_inputs(dataset_cfg(wc.dataset), source_root(wc.dataset)),
        settings=settings("take_index/{dataset}", TAKE_INDEX),
    output:
        takes=D.index(),
        summary=D.index_summary(),
    log:
        L.log("take_index", "dataset"),
    benchmark:
        L.benchmark("take_index", "dataset")
    conda:
        CONDA_ENV
    params:
        **TAKE_INDEX,
        root=lambda wc: source_root(wc.dataset),
        records=lambda wc: L.data(wc.dataset).take_records(),
    script:
        "../scripts/take_index.py"


# One take's raw files, for kinds that fetch them (the Ego-Exo4D download); capped by the `downloads` resource.
rule download:
    input:
        record=take_record,
        settings=settings("download/{dataset}", DOWNLOAD),
    output:
        raw=temp(directory(D.raw())),
    log:
        L.log("download", "dataset", "take"),
    benchmark:
        L.benchmark("download", "dataset", "take")
    localrule: True
    conda:
        CONDA_ENV
    resources:
        downloads=1,
    params:
        **DOWNLOAD,
        root=lambda wc: source_root(wc.dataset),
    script:
        "../scripts/download.py"


rule extract:
    input:
        record=take_record,
        raw=raw_take,
        source=take_inputs,
        settings=settings("extract/{dataset}", EXTRACT),
    output:
        annotation=D.annotation(),
        images=directory(D.images()),
    log:
        L.log("extract", "dataset", "take"),
    benchmark:
        L.benchmark("extract", "dataset", "take")
    # Before any further download: raw videos are deleted as soon as their take is extracted.
    priority: 10
    conda:
        CONDA_ENV
    params:
        **EXTRACT,
        root=lambda wc: source_root(wc.dataset),
    script:
        "../scripts/extract.py"


rule pairs:
    input:
        takes=D.index(),
        annotations=lambda wc: take_files(L.data(wc.dataset).annotation(), wc.dataset),
    output:
        pairs=D.pairs(),
        summary=D.pairs_summary(),
    log:
        L.log("pairs", "dataset"),
    benchmark:
        L.benchmark("pairs", "dataset")
    conda:
        CONDA_ENV
    script:
        "../scripts/pairs.py"


rule split:
    input:
        pairs=D.pairs(),
        settings=settings("split/{dataset}/{split}", SPLIT),
    output:
        split=D.split(),
        diagnostics=D.split_diagnostics(),
    log:
        L.log("split", "dataset", "split"),
    benchmark:
        L.benchmark("split", "dataset", "split")
    conda:
        CONDA_ENV
    params:
        **SPLIT,
    script:
        "../scripts/split.py"
