# rules: report -- every job's timing (found through the workflow's rules), then the self-contained report.html
# from the files its input function declares (omama.report.report_inputs).


REPORT = dict(report=report_params())


# After every other job the report needs (the same inputs), so that their timings are all there.
rule timing:
    input:
        TAKE_INDEXES,
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
        TAKE_INDEXES,
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
