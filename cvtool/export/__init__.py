"""Exporting trained checkpoints (ONNX, TorchScript), checking them, and running them.

graphs: what each task family's graph computes; rcnn: the graph of torchvision's R-CNN
detectors; writer: the two formats and their files; check: the parity proof against the
checkpoint; runtime: loading and running an export; exporter: the command's steps;
predict: ``cvtool predict`` on an export.
"""
