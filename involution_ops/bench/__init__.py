"""The benchmark suite around the package: the model manifest (`manifest`), FLOP counting
(`flops`), the results tables (`tables/`), speed (`speed/`, `op_speed`, `gpu_speed`), the built-in
toy data (`toy_data`) and the run machinery: `launch/` (what `make coco-*` / `cityscapes-*`
start), `runconfig` (the one function that builds a run's config), `preflight/` (the checks before
anything trains), `run_process` (inside the training and evaluation processes), `records` (the
run record), `paper_batch` (the paper's total batch) and `dataset_identity` (which data a run
evaluated). The README's layout section lists every module.

Needs the `mm` extra (OpenMMLab, PyYAML, matplotlib); `involution_ops` itself never
imports it, so the core stays importable with torch alone.
"""
