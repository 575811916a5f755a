# rules: data -- source -> take index -> per take download -> extract (raw deleted) -> pairs -> splits


def source_root():
    """Folder in the Ego-Exo4D layout that the take index reads."""
    kind = config["source"]["kind"]
    if kind == "synthetic":
        return f"{RESULTS}/synthetic"
    if kind == "egoexo":
        return f"{RESULTS}/source"
    return config["source"]["path"]


def source_files():
    root = source_root()
    files = {"takes": f"{root}/takes.json"}
    for s in config["selection"]["annotation_splits"]:
        files[f"relations_{s}"] = f"{root}/annotations/relations_{s}.json"
    if config["source"]["kind"] == "egoexo":
        files["manifest"] = f"{root}/manifest.json"
    return files


def downscaled_videos():
    """True/False for the egoexo part; None lets a local folder use what it holds."""
    if config["source"]["kind"] == "egoexo":
        return config["source"]["egoexo"]["part"] == "downscaled_takes/448"
    return None


rule fetch_metadata:
    output:
        takes=f"{RESULTS}/source/takes.json",
        relations_train=f"{RESULTS}/source/annotations/relations_train.json",
        relations_val=f"{RESULTS}/source/annotations/relations_val.json",
        manifest=f"{RESULTS}/source/manifest.json",
    params:
        cfg=config["source"]["egoexo"],
    log:
        f"{LOGS}/fetch_metadata.log",
    benchmark:
        f"{BENCH}/fetch_metadata.tsv"
    script:
        "../scripts/fetch_metadata.py"


checkpoint take_index:
    input:
        **source_files(),
    output:
        takes=f"{RESULTS}/index/takes.json",
        summary=f"{RESULTS}/index/summary.json",
    params:
        root=source_root(),
        records=f"{RESULTS}/index/takes",
        selection=config["selection"],
        downscaled=downscaled_videos(),
    log:
        f"{LOGS}/take_index.log",
    benchmark:
        f"{BENCH}/take_index.tsv"
    script:
        "../scripts/take_index.py"


rule download:
    input:
        record=take_record,
    output:
        raw=temp(directory(f"{RESULTS}/raw/{{take}}")),
    params:
        source=config["source"],
        root=source_root(),
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
    output:
        annotation=f"{RESULTS}/frames/{{take}}/annotation.json",
        images=directory(f"{RESULTS}/frames/{{take}}/images"),
    params:
        frames=config["frames"],
    log:
        f"{LOGS}/extract/{{take}}.log",
    benchmark:
        f"{BENCH}/extract/{{take}}.tsv"
    script:
        "../scripts/extract.py"


rule pairs:
    input:
        takes=f"{RESULTS}/index/takes.json",
        annotations=lambda wc: expand(f"{RESULTS}/frames/{{take}}/annotation.json", take=selected_takes()),
    output:
        pairs=f"{RESULTS}/pairs.parquet",
        summary=f"{RESULTS}/pairs.json",
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
    log:
        f"{LOGS}/split/{{split}}.log",
    benchmark:
        f"{BENCH}/split/{{split}}.tsv"
    script:
        "../scripts/split.py"
