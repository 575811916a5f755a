# rules: synthetic — the embedded default source, generated in the Ego-Exo4D layout.


SYNTHESIZE = dict(cfg=config["synthetic"])  # its params and its settings record (common.smk: settings)


if config["source"]["kind"] == "synthetic":

    rule synthesize:
        input:
            settings=settings("synthesize", SYNTHESIZE),
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
            **SYNTHESIZE,
        script:
            "../scripts/synthesize.py"
