"""Reports over runs (paper Section V): collect run folders, build Tables I-VI, the Section V-C
statistics over settings and the figures; write Markdown, CSV and one self-contained HTML page.

    from iac_tf.reporting.report import build_report
    build_report(["runs/acdc_base", "runs/acdc_vgg16"], "report/")
"""
