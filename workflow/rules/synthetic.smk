# rules: synthetic — the embedded default source, generated in the Ego-Exo4D layout.


if config["source"]["kind"] == "synthetic":

    rule synthesize:
        output:
            takes=f"{RESULTS}/synthetic/takes.json",
            train=f"{RESULTS}/synthetic/annotations/relations_train.json",
            val=f"{RESULTS}/synthetic/annotations/relations_val.json",
            visibility=f"{RESULTS}/synthetic/visibility.parquet",
            videos=directory(f"{RESULTS}/synthetic/takes"),
        params:
            cfg=config["synthetic"],
        conda:
            CONDA_ENV
        log:
            f"{LOGS}/synthesize.log",
        benchmark:
            f"{BENCH}/synthesize.tsv"
        script:
            "../scripts/synthesize.py"
