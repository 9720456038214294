"""benchmarks/inference.py: predict end to end, torch, ONNX and TorchScript images/s for a classifier and a detector."""

from __future__ import annotations


def test_inference_smoke_times_every_method_for_the_classifier_and_the_detector(run_benchmark):
    figures, stdout = run_benchmark("inference")
    results = {r["task"]: r for r in figures["results"]}
    # a classifier and a detector, each timed through predict (files), torch, onnxruntime and TorchScript
    assert set(results) == {"classification", "detection"}
    for result in results.values():
        assert set(result["images_per_s"]) == {"predict", "torch", "onnx", "torchscript"}
        assert all(rate > 0 for rate in result["images_per_s"].values()) and result["model_load_s"] > 0
    # the exported detector takes one image at a time; the classifier a batch
    assert results["detection"]["batch_size"] == 1 and results["classification"]["batch_size"] > 1
    # one final line of ratios
    assert stdout.strip().splitlines()[-1].startswith("ratios:")
