"""The benchmark suite around the package: the model manifest (`zoo`), FLOP counting
(`flops`), the results tables (`tables`) and the built-in toy data (`toy_data`).

Needs the `mm` extra (OpenMMLab, PyYAML, matplotlib); `involution_ops` itself never
imports it, so the core stays importable with torch alone.
"""
