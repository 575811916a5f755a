# rules: report -- every job's timing (found through the workflow's rules), then the self-contained report.html
# from the files its input function declares (omama.report.report_inputs).


REPORT = dict(report=report_params())


def benchmark_patterns():
    """Every rule's benchmark pattern, from the workflow itself (a rule added later is timed too)."""
    from snakemake.io import strip_wildcard_constraints

    return {r.name: strip_wildcard_constraints(str(r.benchmark)) for r in workflow.rules if r.benchmark is not None}


def known_wildcards(wc):
    """The values the current config gives each wildcard (timings of removed experiments or datasets are left out)."""
    used = sorted({d for x in EXPERIMENTS.values() for d in (x.dataset, *x.evaluate_on)})
    return {
        "dataset": used,
        "take": sorted({t for d in used for t in selected_takes(d)}),
        "exp": list(EXPERIMENTS),
        "backbone": list(config["backbones"]),
        "proposer": list(config["proposers"]),
        "name": list(config["submissions"]),
    }


# After every other job the report needs (the same inputs), so that their timings are all there.
rule timing:
    input:
        lambda wc: [f for k, files in report_files(wc).items() if k != "timing" for f in files],
    output:
        timing=L.timing(),
    log:
        L.log("timing"),
    conda:
        CONDA_ENV
    params:
        benchmarks=L.benchmarks,
        patterns=lambda wc: benchmark_patterns(),
        known=known_wildcards,
    script:
        "../scripts/timing.py"


rule report:
    input:
        unpack(report_files),
        settings=settings("report", REPORT),
    output:
        html=L.report(),
    log:
        L.log("report"),
    benchmark:
        L.benchmark("report")
    conda:
        CONDA_ENV
    params:
        **REPORT,
    script:
        "../scripts/report.py"
