"""The benchmark suite around the package: the model manifest (`zoo`), FLOP counting
(`flops`), the results tables (`tables`), the built-in toy data (`toy_data`) and the run
machinery: `launcher` (what `make coco-*` / `cityscapes-*` start), `runconfig` (the one
function that builds a run's config), `preflight` (the checks before anything trains),
`run_process` (inside the training and evaluation processes), `records` (run records),
`batch` (the paper's total batch) and `dataset_identity` (which data a run evaluated).

Needs the `mm` extra (OpenMMLab, PyYAML, matplotlib); `involution_ops` itself never
imports it, so the core stays importable with torch alone.
"""
