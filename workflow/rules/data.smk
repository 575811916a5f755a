# rules: data -- source -> take index -> per take download -> extract (raw deleted) -> pairs -> splits


# The folder in the Ego-Exo4D layout that the take index reads, and the files it needs there.
SOURCE_ROOT = {"synthetic": L.synthetic, "egoexo": L.source}.get(config["source"]["kind"], config["source"]["path"])
SOURCE_FILES = {
    "takes": layout.source_takes(SOURCE_ROOT),
    **{f"relations_{s}": layout.source_relations(SOURCE_ROOT, s) for s in config["selection"]["annotation_splits"]},
    **({"manifest": layout.source_manifest(SOURCE_ROOT)} if config["source"]["kind"] == "egoexo" else {}),
}
# egoexo: the configured part decides 448-px or full-resolution videos; a local folder uses what it holds.
DOWNSCALED = config["source"]["egoexo"]["part"] == "downscaled_takes/448" if config["source"]["kind"] == "egoexo" else None


# Each rule's settings: its params, and the settings record its jobs read (common.smk: settings).
FETCH_METADATA = dict(cfg=config["source"]["egoexo"], splits=config["selection"]["annotation_splits"])
TAKE_INDEX = dict(selection=config["selection"], downscaled=DOWNSCALED)
DOWNLOAD = dict(source=config["source"], root=SOURCE_ROOT)
EXTRACT = dict(frames=config["frames"])
# the official split draws nothing: changing the ratios or the seed does not redo it
SPLIT = dict(
    ratios=lambda wc: None if wc.split == "official" else config["split"]["ratios"],
    seed=lambda wc: None if wc.split == "official" else config["split"]["seed"],
)


# Downloads run on the submitting host (cluster nodes often have no internet) and are
# capped by the `downloads` resource in the profiles.
rule fetch_metadata:
    input:
        settings=settings("fetch_metadata", FETCH_METADATA),
    output:
        takes=layout.source_takes(L.source),
        **{f"relations_{s}": layout.source_relations(L.source, s) for s in config["selection"]["annotation_splits"]},
        manifest=layout.source_manifest(L.source),
    log:
        L.log("fetch_metadata"),
    benchmark:
        L.benchmark("fetch_metadata")
    localrule: True
    conda:
        CONDA_ENV
    resources:
        downloads=1,
    params:
        **FETCH_METADATA,
    script:
        "../scripts/fetch_metadata.py"


checkpoint take_index:
    input:
        **SOURCE_FILES,
        settings=settings("take_index", TAKE_INDEX),
    output:
        takes=L.index(),
        summary=L.index_summary(),
    log:
        L.log("take_index"),
    benchmark:
        L.benchmark("take_index")
    conda:
        CONDA_ENV
    params:
        **TAKE_INDEX,
        root=lambda wc, input: os.path.dirname(input.takes),
        records=lambda wc, output: os.path.join(os.path.dirname(output.takes), "takes"),
    script:
        "../scripts/take_index.py"


rule download:
    input:
        record=take_record,
        settings=settings("download", DOWNLOAD),
    output:
        raw=temp(directory(L.raw())),
    log:
        L.log("download/{take}"),
    benchmark:
        L.benchmark("download/{take}")
    localrule: True
    conda:
        CONDA_ENV
    resources:
        downloads=1,
    params:
        **DOWNLOAD,
    script:
        "../scripts/download.py"


rule extract:
    input:
        record=take_record,
        raw=rules.download.output.raw,
        source=source_videos,
        settings=settings("extract", EXTRACT),
    output:
        annotation=L.annotation(),
        images=directory(L.images()),
    log:
        L.log("extract/{take}"),
    benchmark:
        L.benchmark("extract/{take}")
    # Before any further download: raw videos are deleted as soon as their take is extracted.
    priority: 10
    conda:
        CONDA_ENV
    params:
        **EXTRACT,
    script:
        "../scripts/extract.py"


rule pairs:
    input:
        takes=rules.take_index.output.takes,
        annotations=lambda wc: take_files(L.annotation()),
    output:
        pairs=L.pairs(),
        summary=L.pairs_summary(),
    log:
        L.log("pairs"),
    benchmark:
        L.benchmark("pairs")
    conda:
        CONDA_ENV
    script:
        "../scripts/pairs.py"


rule split:
    input:
        pairs=rules.pairs.output.pairs,
        settings=settings("split", SPLIT),
    output:
        split=L.split(),
        diagnostics=L.split_diagnostics(),
    log:
        L.log("split/{split}"),
    benchmark:
        L.benchmark("split/{split}")
    conda:
        CONDA_ENV
    params:
        **SPLIT,
    script:
        "../scripts/split.py"
