"""What a config and a search may say, checked without torch: reading config files (`config_file`),
the user error (`errors`), the keys each task reads (`task_keys`), its metric names and exported
settings (`metric_names`), timm's model names (`model_names`, from `timm_models.json`, which
`python -m training.schema.write_timm_models` writes) and a trial's share of the machine
(`resources`). A space file's mistake is answered from these before anything heavy loads;
`tests/test_architecture.py` keeps them torch-free. The typed config itself is `training/config.py`."""
