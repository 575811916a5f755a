# rules: report -- the self-contained report.html, from the files its input function declares
# (omama.report.report_inputs: results, photo-pair sets, and the timing files of the jobs behind them).


REPORT = dict(report=report_params())


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
