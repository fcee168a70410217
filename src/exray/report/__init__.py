"""Reports: HTML pages a browser opens without a server, with trigger images and mask heat-maps."""

from exray.report.html import write_index, write_model_report

__all__ = ["write_index", "write_model_report"]
