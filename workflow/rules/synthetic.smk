# rules: synthetic — the embedded default source, generated in the Ego-Exo4D layout.


if config["source"]["kind"] == "synthetic":

    rule synthesize:
        output:
            takes=layout.source_takes(L.synthetic),
            train=layout.source_relations(L.synthetic, "train"),
            val=layout.source_relations(L.synthetic, "val"),
            test=layout.source_relations(L.synthetic, "test"),
            visibility=L.visibility(),
            videos=directory(L.synthetic_videos()),
        log:
            L.log("synthesize"),
        benchmark:
            L.benchmark("synthesize")
        conda:
            CONDA_ENV
        params:
            cfg=config["synthetic"],
        script:
            "../scripts/synthesize.py"
