"""`make bench`: measured speed and memory of every paper model next to its ResNet baseline.

For each pair (a RedNet model, its ResNet baseline) and each inference option
(eager, conv+BN fusion, channels_last, torch.compile): median latency and images/s;
for training (forward, loss, backward, SGD step): median step time with the
involution kernel map regenerated in backward (``recompute_kernel``, the default,
less memory) and kept (more memory, no second kernel generation), and the peak
memory of one step. The two models of a pair take turns (A, B, A, B, ...) so that
a change of machine load hits both alike. Conventions of mmdet's
tools/analysis_tools/benchmark.py: warm-up iterations not timed, then repeats,
median; on CUDA every timing is bracketed by torch.cuda.synchronize() and memory is
the allocator's peak (max_memory_allocated).

Results go to results/speed.json (with the machine: CPU model, cores, threads, load
average at start and end, torch, date, device); an earlier speed.json is first kept
under results/speed/<its date>.json.

Random weights throughout: speed and memory do not depend on them. Detectors and
segmentors run their network (mode="tensor": no final NMS or resize, the same for
both models of a pair); SyncBN is reverted to BN (one process).

The modules, in the order a run uses them:
- `pairs`: which models are measured (`ModelPair`, from the manifest) and at which shapes;
- `builders`: a pair's two models built with their inputs (`BuiltModel`);
- `timing` and `memory`: the interleaved timer and the peak-memory probe;
- `measure`: one pair, inference options and training steps;
- `runner`: every pair, the machine facts, speed.json (`run`, `save_results`);
- `report`: speed.json as markdown; imports neither torch nor the measuring modules,
  so `make tables` renders it without them;
- `cli`: the command line of `make bench` (scripts/bench_speed.py).
This package's own import loads none of them.
"""
