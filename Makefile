# Involution benchmark suite. `make help` lists the targets; the README explains them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PYTHON      ?= python3
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS      ?= mm,test,cuda12
PY          := $(VENV)/bin/python
PYTEST_ARGS ?=
# make test-fast: pytest-xdist worker processes (auto: one per core; 0: in this process)
TEST_WORKERS ?= auto

# Run options, passed to scripts/benchmark.py only when set (see README, "Running benchmarks").
# CFG_OPTIONS goes as one single-quoted string that benchmark.py splits like a shell, so values
# holding '(' or spaces (CFG_OPTIONS='a.classes=(x,y) b=1') never reach the recipe's shell as code.
yes = $(filter 1 true yes,$(1))
RUN_OPTS = $(if $(DATA),--data '$(DATA)') \
	$(if $(GPUS),--gpus $(GPUS)) \
	$(if $(NNODES),--nnodes $(NNODES)) \
	$(if $(NODE_RANK),--node-rank $(NODE_RANK)) \
	$(if $(MASTER_ADDR),--master-addr $(MASTER_ADDR)) \
	$(if $(MASTER_PORT),--master-port $(MASTER_PORT)) \
	$(if $(SLURM_PARTITION),--slurm-partition '$(SLURM_PARTITION)') \
	$(if $(CKPT),--ckpt '$(CKPT)') \
	$(if $(PRETRAINED),--pretrained '$(PRETRAINED)') \
	$(if $(WORK_DIR),--work-dir '$(WORK_DIR)') \
	$(if $(SEED),--seed $(SEED)) \
	$(if $(call yes,$(DETERMINISTIC)),--deterministic) \
	$(if $(call yes,$(AMP)),--amp) \
	$(if $(call yes,$(RESUME)),--resume) \
	$(if $(call yes,$(BASELINES)),--baselines) \
	$(if $(BATCH),--batch $(BATCH)) \
	$(if $(CONFIGS),--configs $(CONFIGS)) \
	$(if $(CFG_OPTIONS),--cfg-options-line '$(subst ','\'',$(CFG_OPTIONS))')

BENCH := $(PY) scripts/benchmark.py

# One target per group of a trained suite (`coco-faster-rcnn` runs group faster_rcnn) and one per
# suite (`coco`: all its groups), read from the manifest: the groups of its `suites:` block (one
# flow-style line per suite) and, to say how many models each runs, the rows of the suite's section.
# Entries suite:group:models, in the order `make help` lists them; `scripts/benchmark.py` checks
# the group itself. tests/bench/test_make_targets.py compares this reading with manifest.py's.
MANIFEST := results/paper.yaml
SUITE_GROUPS := $(shell awk ' \
	/^[^ \#]/ { section = $$1; sub(/:.*/, "", section) } \
	section == "suites" && /groups: *\[/ { \
		suite = $$1; sub(/:$$/, "", suite); list = $$0; sub(/.*groups: *\[/, "", list); sub(/\].*/, "", list); \
		n = split(list, names, /[ ,]+/); suites[++count] = suite; \
		for (i = 1; i <= n; i++) if (names[i] != "") groups[suite] = groups[suite] " " names[i] } \
	section != "suites" && section != "baselines" && /^    group: / { models[section, $$2]++; total[section]++ } \
	END { for (s = 1; s <= count; s++) { suite = suites[s]; n = split(groups[suite], names, " "); \
		for (i = 1; i <= n; i++) printf "%s:%s:%d ", suite, names[i], models[suite, names[i]]; \
		printf "%s:all:%d ", suite, total[suite] } }' $(MANIFEST))
ifeq ($(SUITE_GROUPS),)
$(warning $(MANIFEST): no suite with groups found, so no coco-*/cityscapes-* targets)
endif
suite_field = $(word $(2),$(subst :, ,$(1)))
# coco:faster_rcnn:3 -> coco-faster-rcnn; coco:all:8 -> coco
suite_target = $(call suite_field,$(1),1)$(if $(filter all,$(call suite_field,$(1),2)),,-$(subst _,-,$(call suite_field,$(1),2)))
suite_models = $(call suite_field,$(1),3) $(call suite_field,$(1),1) model$(if $(filter 1,$(call suite_field,$(1),3)),,s)
suite_help = train + evaluate $(if $(filter all,$(call suite_field,$(1),2)),all $(call suite_models,$(1)) of the paper (every group),the $(call suite_models,$(1)) of group $(call suite_field,$(1),2)) in $(MANIFEST), then update tables
SUITE_TARGETS := $(foreach entry,$(SUITE_GROUPS),$(call suite_target,$(entry)))
$(foreach entry,$(SUITE_GROUPS),$(eval $(call suite_target,$(entry)): SUITE_ARGS := $(call suite_field,$(entry),1) $(call suite_field,$(entry),2)))
# `make bench BENCH_OPTS="--suite imagenet --repeats 10"`: options of scripts/bench_speed.py
BENCH_OPTS ?=

# The suite targets (coco-retinanet, ..., coco, cityscapes): SUITE_TARGETS, read from the manifest above.
.PHONY: help setup test test-fast $(SUITE_TARGETS) flops tables toy-data bench-op bench bench-models gpu-check cuda-static

help: ## list the targets
	@awk -v suites='$(foreach entry,$(SUITE_GROUPS),$(call suite_target,$(entry))|$(call suite_help,$(entry));)' ' \
		function row(name, text) { printf "  \033[1m%-20s\033[0m %s\n", name, text } \
		BEGIN { FS = ":.*## " } \
		/^\$$\(SUITE_TARGETS\):/ { n = split(suites, entries, ";"); \
			for (i = 1; i < n; i++) { split(entries[i], field, "|"); sub(/^ /, "", field[1]); row(field[1], field[2]) } } \
		/^[a-z][a-zA-Z_-]*:.*## / { row($$1, $$2) }' $(MAKEFILE_LIST)

# The environment is a file target: made (setup_env.sh) when absent, when pyproject.toml or
# setup_env.sh is newer, or when it was made for another TORCH_SPEC/TORCH_INDEX/EXTRAS (the stamp
# ends with them); so a make runs setup at most once, and its recursive $(MAKE) not again.
# `make setup` itself always runs setup_env.sh, which checks the stamp's content and says so.
SETUP_STAMP := $(VENV)/.involution_ops-setup
setup_stamp_current = $(and $(wildcard $(PY)),$(filter %-$(TORCH_SPEC)-$(TORCH_INDEX)-$(EXTRAS),$(if $(wildcard $(SETUP_STAMP)),$(file <$(SETUP_STAMP)))))
$(SETUP_STAMP): pyproject.toml scripts/setup_env.sh $(if $(filter setup,$(MAKECMDGOALS)),FORCE,$(if $(setup_stamp_current),,FORCE))
	@VENV='$(VENV)' PYTHON='$(PYTHON)' TORCH_SPEC='$(TORCH_SPEC)' TORCH_INDEX='$(TORCH_INDEX)' \
		EXTRAS='$(EXTRAS)' bash scripts/setup_env.sh
	@touch '$@'

.PHONY: FORCE
FORCE:

setup: $(SETUP_STAMP) ## create .venv and install torch, mmcv (built once, cached) and the pinned stack

test: setup ## run the whole test suite (what CI runs)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup ## the inner loop: the tests not marked slow, on every core (TEST_WORKERS=auto)
	$(PY) -m pytest -m "not slow" -n $(TEST_WORKERS) $(PYTEST_ARGS)

$(SUITE_TARGETS): setup ## the suite targets, listed by `make help` from the manifest
	$(BENCH) $(SUITE_ARGS) $(RUN_OPTS)
	@$(MAKE) --no-print-directory tables

flops: setup ## parameters and FLOPs of every paper model, in the paper's convention and in full
	$(PY) scripts/get_flops.py --out results/complexity.json --table results/complexity.md

tables: setup ## results/README.md and plots from results/runs/*.json and results/complexity.json
	$(PY) scripts/make_tables.py --runs results/runs --complexity results/complexity.json \
		--paper results/paper.yaml --out results/README.md --plot results/complexity.png \
		--speed results/speed.json

toy-data: setup ## generate the built-in COCO and Cityscapes-layout toy datasets in data/toy
	$(PY) scripts/make_toy_data.py --out data/toy

bench-op: setup ## operator speed and memory of each backend next to the unfold formula
	$(PY) scripts/bench_op.py

bench: setup ## every paper model vs its ResNet baseline: latency, images/s, train step, peak memory -> results/speed.json, .md
	$(PY) scripts/bench_speed.py $(BENCH_OPTS)

bench-models: setup ## the RetinaNet RedNet-50 / ResNet-50 pair of `make bench` alone -> results/speed-retinanet.json
	$(PY) scripts/bench_speed.py --models retinanet_red50_fpn_1x_coco --out results/speed-retinanet.json $(BENCH_OPTS)

cuda-static: setup ## CUDA kernels' registers, spills, SASS per multiply-add and per output, no GPU -> results/cuda_static.md
	$(PY) scripts/cuda_static.py

gpu-check: setup ## on a CUDA machine: every involution implementation and a RedNet-50 training step timed -> results/gpu.md, then the CUDA kernel tests
	PYTHON='$(PY)' bash scripts/gpu_check.sh
