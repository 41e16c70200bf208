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
# `make bench BENCH_OPTS="--suite imagenet --repeats 10"`: options of scripts/bench_speed.py
BENCH_OPTS ?=

.PHONY: help setup test coco coco-retinanet coco-faster-rcnn coco-mask-rcnn \
	cityscapes cityscapes-fpn cityscapes-upernet flops tables toy-data bench-op bench bench-models gpu-check cuda-static

help: ## list the targets
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[1m%-20s\033[0m %s\n", $$1, $$2}'

setup: ## create .venv and install torch, mmcv (built once, cached) and the pinned stack
	@VENV='$(VENV)' PYTHON='$(PYTHON)' TORCH_SPEC='$(TORCH_SPEC)' TORCH_INDEX='$(TORCH_INDEX)' \
		EXTRAS='$(EXTRAS)' bash scripts/setup_env.sh

test: setup ## run the whole test suite (what CI runs)
	$(PY) -m pytest $(PYTEST_ARGS)

coco-retinanet: setup ## train + evaluate RetinaNet RedNet-50 (conv and involution neck), then update tables
	$(BENCH) coco retinanet $(RUN_OPTS)
	@$(MAKE) --no-print-directory tables

coco-faster-rcnn: setup ## train + evaluate the three Faster R-CNN RedNet-50 variants, then update tables
	$(BENCH) coco faster_rcnn $(RUN_OPTS)
	@$(MAKE) --no-print-directory tables

coco-mask-rcnn: setup ## train + evaluate the three Mask R-CNN RedNet-50 variants, then update tables
	$(BENCH) coco mask_rcnn $(RUN_OPTS)
	@$(MAKE) --no-print-directory tables

coco: setup ## all eight COCO detectors of the paper
	$(BENCH) coco all $(RUN_OPTS)
	@$(MAKE) --no-print-directory tables

cityscapes-fpn: setup ## train + evaluate FPN RedNet-50 (conv and involution neck) on Cityscapes
	$(BENCH) cityscapes fpn $(RUN_OPTS)
	@$(MAKE) --no-print-directory tables

cityscapes-upernet: setup ## train + evaluate UPerNet RedNet-50 on Cityscapes
	$(BENCH) cityscapes upernet $(RUN_OPTS)
	@$(MAKE) --no-print-directory tables

cityscapes: setup ## all three Cityscapes segmentors of the paper
	$(BENCH) cityscapes all $(RUN_OPTS)
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
