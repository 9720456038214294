"""Metrics, one module per task kind: `classification` (macro F1, per class, miss and overkill
rates), `multilabel`, `detection` (mAP via torchmetrics, per class) and `calibration` (the
decision threshold at a target miss rate). A task names its metrics with a `*_metric_names`
function, so a search can check `search.metric` before anything trains."""
