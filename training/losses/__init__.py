"""Losses, one module per task kind: `classification` (cross-entropy, focal, class-balanced),
`multilabel` (BCE, sigmoid focal, asymmetric), `detection` (the detector stages' classification
losses), and `focal`, the one focal modulation all of them share. A new task's loss goes in a new
module here with its own registry (a dict from name to builder), checked against the config's
choices by tests/training/test_registries.py."""
