"""The self-contained HTML report, by role (images inlined as base64 PNG: it opens offline).

- ``inputs``: the settings (``ReportParams``), the files the report rule declares (``report_inputs``)
  and ``Inputs``, which reads only those; light, for the rule files.
- ``tables``: metric cells with intervals, breakdowns, timings, diagnostics as HTML tables.
- ``figures``: matplotlib figures; ``overlays``: mask overlays on the frames.
- ``sections``: run summary, metrics, proposal recall, photo-pair sets, paired comparison.
- ``build``: ``build_context`` and ``write_report``, rendering ``templates/report.html.j2``.
"""

from omama.report.inputs import ReportParams, report_inputs

__all__ = ["ReportParams", "report_inputs"]
