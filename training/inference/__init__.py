"""After training: score saved runs with intervals (`evaluate`), predict on image files (`predict`)
and export one deployable file (`deploy`): `python -m training evaluate | predict | export-model`."""
