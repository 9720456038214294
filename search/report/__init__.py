"""`python -m search report RESULT_DIR`: what a finished search found, as files under RESULT_DIR/report/."""

import matplotlib

matplotlib.use("Agg")

from search.report.writer import write_report  # noqa: E402

__all__ = ["write_report"]
