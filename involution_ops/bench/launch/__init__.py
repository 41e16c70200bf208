"""The benchmark launcher behind `make coco-*` / `make cityscapes-*` (scripts/benchmark.py).

For each config of the target: build the run's config (involution_ops.bench.runconfig), check
it - every config before the first run starts - then create the run folder
`<work-dir>/<suite>/<config name>/<timestamp>`, dump the config there as config.py and start
scripts/train.py (or scripts/test.py for CKPT) on that file: as one process, through torchrun or
through srun. Each run leaves a record in results/runs/.

- `cli`: the command line, read once into `options.LaunchOptions`; `main`
- `options`: `LaunchOptions`, `Job`, and `RunContext` (what a launch decides once for all its runs)
- every check before the first run is the pre-flight's (involution_ops.bench.preflight.run_preflight)
- `planning`: jobs, data, the run context, each run's config, resume planning, run folders
- `commands`: one process, torchrun or srun, and the children's environment
- `runner`: the runs one after the other, Ctrl-C, the summary
"""
