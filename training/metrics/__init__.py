"""Metrics, one module per task kind: `classification` (macro F1, per class, miss and overkill
rates), `multilabel`, `detection` (mAP via torchmetrics, per class) and `calibration` (the
decision threshold at a target miss rate). Their keys are declared in `training/schema/metric_names.py`,
without torch, so a search checks `search.metric` before anything heavy loads."""
