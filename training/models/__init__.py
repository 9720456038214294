"""Image models: a timm backbone by name, frozen stages (`backbone`), the CBAM attention block
(`attention`) and starting from a local weights file (`init_from`). Detectors: `training/detection/`."""
