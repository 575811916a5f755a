# rules: report -- the self-contained report.html, from the files its input function declares
# (omama.report.report_inputs: results, photo-pair sets, and the timing files of the jobs behind them).


rule report:
    input:
        unpack(report_files),
    output:
        html=L.report(),
    log:
        L.log("report"),
    benchmark:
        L.benchmark("report")
    conda:
        CONDA_ENV
    params:
        report=report_params(),
    script:
        "../scripts/report.py"
