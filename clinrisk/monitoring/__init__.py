"""Monitoring: prediction capture, the drift monitor, outcomes, alarms and the report.

`capture` and `records` stay numpy- and pandas-free, so the predict Lambda can capture; the
monitor, outcomes and report modules run where pandas and pyarrow are installed.
"""
