"""`python -m training.schema.write_timm_models`: write `training/schema/timm_models.json`, the installed timm's model
names that `training.schema.model_names` checks `model.name` against without importing timm. Run it after
changing the timm version, and commit the file."""

from __future__ import annotations

import json

import timm
from timm.models import get_deprecated_models

from training.schema.model_names import TIMM_MODELS_FILE, installed_timm


def main() -> None:
    names = {
        "timm": installed_timm(),  # as the check reads it: from the package metadata
        "models": timm.list_models(),  # in timm's order: the same suggestions as its own check
        "deprecated": sorted(get_deprecated_models()),  # not listed, still accepted by timm.is_model
    }
    TIMM_MODELS_FILE.write_text(json.dumps(names, indent=0) + "\n")
    print(f"wrote {TIMM_MODELS_FILE}: {len(names['models'])} models of timm {names['timm']}")


if __name__ == "__main__":
    main()
