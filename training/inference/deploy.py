"""The trained model of a run as one file a deployment runs without this project:
`python -m training export-model RUN_DIR -o model.onnx` (ONNX) or `-o model.ts` (TorchScript).

The file takes float32 RGB images in [0, 1], NCHW, at the run's input size (`data.image_size`;
multilabel: `image_size` x `image_width`) and returns what `predict` computes (`Task.infer`):
classification `probs`, the class probabilities (softmax; the views of `eval.tta` averaged);
multilabel `probs`, one sigmoid per class; detection, for a batch of exactly one image, `boxes`
(xyxy, in the input's pixels), `scores` and `labels` (detector labels 1..K: label l is the class
`label_names[l - 1]`), every box above the detector's own floor of 0.05. Normalization (`mean`, `std`)
is inside. Thresholds are metadata the caller applies: an image is defective when 1 - probs[good]
>= `decision_threshold` (the argmax when it is null); a box counts when its score > `score_threshold`.

The metadata (task, input_size [height, width], mean, std, class_names, good_class, thresholds...):
in ONNX, `metadata_props`, each value JSON-encoded; in TorchScript, one JSON object stored in the
file as `_extra_files["metadata.json"]`, read by `torch.jit.load(path, _extra_files=files)` with
`files = {"metadata.json": ""}`. A detector's TorchScript file uses torchvision's operators (NMS,
RoIAlign): `import torchvision` before loading it. torch 2.14 marks TorchScript deprecated
(`torch.jit.load` warns) and still runs it; ONNX is the format to build a deployment on.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.inference.evaluate import SavedRun, find_run
from training.inference.predict import check_output, predictions_of, run_classes
from training.schema.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

METADATA_FILE = "metadata.json"  # the TorchScript file's extra file holding the metadata
ONNX_OPSET = 17  # a recent opset every onnxruntime the deploy extra allows runs (1.18+: up to 21)
# the packages each format needs to be written, beyond torch
NEEDS = {".onnx": ["onnx"], ".ts": []}


def plan_export(run_dir: Path, output: Path) -> tuple[SavedRun, list[str]]:
    """(the run, its class names), every check done that needs no torch: folder, config, task, data,
    output suffix and folder, the format's packages."""
    run = find_run(run_dir)
    predictions_of(run)
    classes = run_classes(run)
    suffix = output.suffix.lower() if output.suffix.lower() in NEEDS else ".onnx"
    check_output(output, suffix, "an ONNX model; .ts for TorchScript")
    for package in NEEDS[suffix]:
        if importlib.util.find_spec(package) is None:
            raise ConfigError("-o", f"writing {suffix} needs the package '{package}': pip install '.[deploy]'", output)
    return run, classes


def metadata(run: SavedRun, classes: list[str]) -> dict[str, Any]:
    """What the file tells about itself: input, normalization, outputs, class names and thresholds."""
    from training.augment.knobs import MEAN, STD

    cfg, predictions = run.cfg, predictions_of(run)
    return {
        "task": cfg.task,
        "input": "float32 RGB images in [0, 1], NCHW",
        "batch_size": 1 if predictions.one_image else None,  # None: any
        "input_size": list(cfg.data.image_shape()),
        "mean": list(MEAN),
        "std": list(STD),
        "normalization": "inside the model: (x - mean) / std",
        "outputs": list(predictions.outputs),
        "class_names": classes,
        **predictions.metadata(cfg, classes),
    }


def deployable(run: SavedRun) -> tuple[nn.Module, torch.Tensor]:
    """(the run's model taking [0, 1] images and returning the task's `infer` as a tuple of tensors,
    an example batch at its input size), on the CPU."""
    import torch
    from torch import nn

    from training.loop.runtime import Runtime
    from training.tasks import get_task

    predictions = predictions_of(run)
    try:
        task = get_task(run.cfg.task).loaded(run.cfg, Runtime(torch.device("cpu")), run.model_state())
    except ConfigError as exc:
        raise exc.with_file(run.config_file) from None

    class Deployed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = task.eval_model  # registered: its weights are the file's (a semi task's teacher only)

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
            found = task.infer(images * 255)  # `infer` takes 0-255, as the training batches are
            if predictions.one_image:
                return tuple(found[0][name] for name in predictions.outputs)
            return (found,)

    height, width = run.cfg.data.image_shape()
    example = torch.rand(1 if predictions.one_image else 2, 3, height, width, generator=torch.Generator().manual_seed(0))
    return Deployed().eval(), example


def _write_onnx(module: nn.Module, example: torch.Tensor, info: dict[str, Any], path: Path) -> None:
    import io

    import onnx
    import torch

    axes = None if info["batch_size"] else {name: {0: "batch"} for name in ["images", *info["outputs"]]}
    graph = io.BytesIO()
    # The TorchScript-based exporter (dynamo=False): torchvision's detectors export through it (their
    # NMS is scripted for tracing, so its data-dependent branch stays a branch) and it needs no
    # onnxscript. The default, torch.export, needs onnxscript and, with it (0.7.2 tried), still fails
    # on that branch: a guard on the number of boxes (GuardOnDataDependentSymNode).
    torch.onnx.export(
        module, (example,), graph, dynamo=False, input_names=["images"], output_names=info["outputs"],
        dynamic_axes=axes, opset_version=ONNX_OPSET,
    )  # fmt: skip
    model = onnx.load_from_string(graph.getvalue())
    onnx.helper.set_model_props(model, {key: json.dumps(value) for key, value in info.items()})
    onnx.save(model, str(path))


def _write_torchscript(module: nn.Module, example: torch.Tensor, info: dict[str, Any], path: Path) -> None:
    import torch

    traced = torch.jit.trace(module, (example,))
    torch.jit.save(traced, str(path), _extra_files={METADATA_FILE: json.dumps(info)})


WRITERS: dict[str, Callable[[Any, Any, dict[str, Any], Path], None]] = {".onnx": _write_onnx, ".ts": _write_torchscript}


def export(run: SavedRun, classes: list[str], output: Path) -> dict[str, Any]:
    """Write the run's model to `output` (.onnx or .ts) through a file beside it, renamed when
    complete; returns its metadata."""
    import torch

    module, example = deployable(run)
    info = metadata(run, classes)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    try:
        # tracing warns about every Python value it freezes (image sizes, torchvision's own checks):
        # all are constants of the fixed input size
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            WRITERS[output.suffix.lower()](module, example, info, partial)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return info
