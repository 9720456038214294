"""The files of a search's results folder, named once (Ray-free: every verb reads them)."""

SPACE_FILE = "space.yaml"  # the effective space file, as run
STATE_FILE = "search.json"  # where the search's pieces live: Tune folder, MLflow run, Ray address
JOURNAL_FILE = "trials.jsonl"  # trial -> MLflow run, per-epoch metrics, stop reasons, endings
SUMMARY_FILE = "summary.json"  # written when the search has finished
BEST_FILE = "best.yaml"  # the best trial's training config
TUNE_DIR = "tune"  # Tune's experiment folder (unless --storage puts it elsewhere)
REPORT_DIR = "report"  # `python -m search report` output
