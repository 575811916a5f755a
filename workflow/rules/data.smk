# rules: data -- source -> take index -> per take download -> extract (raw deleted) -> pairs -> splits


# The folder in the Ego-Exo4D layout that the take index reads, and the files it needs there.
SOURCE_ROOT = {"synthetic": f"{RESULTS}/synthetic", "egoexo": f"{RESULTS}/source"}.get(
    config["source"]["kind"], config["source"]["path"]
)
SOURCE_FILES = {
    "takes": f"{SOURCE_ROOT}/takes.json",
    **{
        f"relations_{s}": f"{SOURCE_ROOT}/annotations/relations_{s}.json"
        for s in config["selection"]["annotation_splits"]
    },
    **({"manifest": f"{SOURCE_ROOT}/manifest.json"} if config["source"]["kind"] == "egoexo" else {}),
}
# egoexo: the configured part decides 448-px or full-resolution videos; a local folder uses what it holds.
DOWNSCALED = (
    config["source"]["egoexo"]["part"] == "downscaled_takes/448"
    if config["source"]["kind"] == "egoexo"
    else None
)


# Downloads run on the submitting host (cluster nodes often have no internet) and are
# capped by the `downloads` resource in the profiles.
rule fetch_metadata:
    localrule: True
    output:
        takes=f"{RESULTS}/source/takes.json",
        relations_train=f"{RESULTS}/source/annotations/relations_train.json",
        relations_val=f"{RESULTS}/source/annotations/relations_val.json",
        manifest=f"{RESULTS}/source/manifest.json",
    params:
        cfg=config["source"]["egoexo"],
    resources:
        downloads=1,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/fetch_metadata.log",
    benchmark:
        f"{BENCH}/fetch_metadata.tsv"
    script:
        "../scripts/fetch_metadata.py"


checkpoint take_index:
    input:
        **SOURCE_FILES,
    output:
        takes=f"{RESULTS}/index/takes.json",
        summary=f"{RESULTS}/index/summary.json",
    params:
        root=lambda wc, input: os.path.dirname(input.takes),
        records=lambda wc, output: os.path.join(os.path.dirname(output.takes), "takes"),
        selection=config["selection"],
        downscaled=DOWNSCALED,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/take_index.log",
    benchmark:
        f"{BENCH}/take_index.tsv"
    script:
        "../scripts/take_index.py"


rule download:
    localrule: True
    input:
        record=take_record,
    output:
        raw=temp(directory(f"{RESULTS}/raw/{{take}}")),
    params:
        source=config["source"],
        root=SOURCE_ROOT,
    resources:
        downloads=1,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/download/{{take}}.log",
    benchmark:
        f"{BENCH}/download/{{take}}.tsv"
    script:
        "../scripts/download.py"


rule extract:
    input:
        record=take_record,
        raw=f"{RESULTS}/raw/{{take}}",
        source=source_videos,
    output:
        annotation=f"{RESULTS}/frames/{{take}}/annotation.json",
        images=directory(f"{RESULTS}/frames/{{take}}/images"),
    params:
        frames=config["frames"],
    # Before any further download: raw videos are deleted as soon as their take is extracted.
    priority: 10
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/extract/{{take}}.log",
    benchmark:
        f"{BENCH}/extract/{{take}}.tsv"
    script:
        "../scripts/extract.py"


rule pairs:
    input:
        takes=f"{RESULTS}/index/takes.json",
        annotations=lambda wc: take_files(f"{RESULTS}/frames/{{take}}/annotation.json"),
    output:
        pairs=f"{RESULTS}/pairs.parquet",
        summary=f"{RESULTS}/pairs.json",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/pairs.log",
    benchmark:
        f"{BENCH}/pairs.tsv"
    script:
        "../scripts/pairs.py"


rule split:
    input:
        pairs=f"{RESULTS}/pairs.parquet",
    output:
        split=f"{RESULTS}/splits/{{split}}.parquet",
        diagnostics=f"{RESULTS}/splits/{{split}}.json",
    params:
        ratios=config["split"]["ratios"],
        seed=config["split"]["seed"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/split/{{split}}.log",
    benchmark:
        f"{BENCH}/split/{{split}}.tsv"
    script:
        "../scripts/split.py"
