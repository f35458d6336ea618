# Chimera Bench: one command per job. `make` lists the targets; `make -n TARGET` prints its commands.
# Hardware targets (CPU, CUDA in Docker, native MPS) are described in docs/hardware.md.
# Benchmarks read their device from $CHIMERA_DEVICE (auto, cpu, cuda, mps; default auto).

PYTHON_BOOT ?= python3
VENV        ?= .venv
MPS_VENV    ?= .venv-mps
PY          := $(VENV)/bin/python
MPS_PY      := $(MPS_VENV)/bin/python
DOCKER      ?= docker
CUDA_IMAGE  ?= chimera-bench:cuda
CPU_IMAGE   ?= chimera-bench:cpu
RESULTS     ?= bench/results
PROFILE     ?= ci
# Where training targets write their run folders (RUNS/PROFILE, RUNS/ablation-PROFILE, RUNS/bands-PROFILE).
RUNS        ?= runs
# Extra flags for every training target (matrix, ablation, bands), e.g. a smoke run's
# TRAIN_ARGS="--set train.max_steps=20 --set data.train_samples=64" (scripts/readme_smoke.py).
TRAIN_ARGS  ?=
# Seeds of the ablation and of the convergence bands.
ABLATION_SEEDS ?= 0 1 2
BANDS_SEEDS ?= 0 1 2 3 4
# Where `make ablation` and `make bands` publish what the doctor and the loss gate read (the package's own data).
PUBLISH     ?= chimera
TARGET      ?= cpu
# Where the CPU image's torch and setup's come from (PyPI's Linux torch is the CUDA build); empty: pip's own
# configuration. `make setup` adds it only on Linux without an NVIDIA GPU, and only if it answers within 5 s.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# AG News folder; default $CHIMERA_DATA_DIR, else ../shared/data/ag_news if present, else the Hugging Face hub.
DATA_DIR    ?= $(or $(CHIMERA_DATA_DIR),$(wildcard $(abspath ../shared/data/ag_news)))
DATA_ARG     = $(if $(DATA_DIR),--data-dir $(DATA_DIR))
DATA_MOUNT   = $(if $(DATA_DIR),-v $(abspath $(DATA_DIR)):/data:ro,-e CHIMERA_DATA_DIR=)
BENCH        = pytest bench --benchmark-only
# The short CI pass: calibration GEMM + every cell's train step at ci shapes; what the speed gate compares.
CI_BENCH     = pytest bench/test_bench_gemm.py bench/test_bench_train_step.py --benchmark-only --bench-profile ci
BASELINE    ?= bench/baselines/cpu.json
# Extra flags for the speed gate in bench-ci, e.g. GATE_ARGS="--markdown FILE" (its table appended as markdown).
GATE_ARGS   ?=
# Images: one Dockerfile, TARGET=cpu|cuda. BASE_IMAGE is pulled when it can be, else a local Debian
# bootstrap is used or made (scripts/container_base.sh); docs/containers.md says how to pick another.
BASE_IMAGE  ?= docker.io/library/python:3.11.16-slim-bookworm
# Extra build flags, e.g. podman's BUILD_FLAGS="-v /etc/ssl/certs:/etc/ssl/certs:ro" behind a TLS-intercepting proxy.
BUILD_FLAGS ?=
IMAGE_ARGS   = --build-arg VERSION=$$($(PYTHON_BOOT) -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])') \
               --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
               --build-arg SOURCE=$$(git remote get-url origin 2>/dev/null || echo unknown)
# WHEELS=host (default): the host's pip downloads the image's wheels into docker/wheelhouse/<target>/ and
# the build installs them with no index (the host's mirrors and proxy settings apply; works air-gapped).
# WHEELS=index: pip resolves inside the build from PyPI (and TORCH_INDEX for the CPU torch).
WHEELS      ?= host
IMAGE_BUILD  = base=$$(DOCKER=$(DOCKER) bash scripts/container_base.sh $(BASE_IMAGE)) && \
               $(DOCKER) build $(BUILD_FLAGS) -f docker/Dockerfile --build-arg BASE_IMAGE=$$base $(IMAGE_ARGS) \
               --build-arg WHEELS=$(WHEELS)
# (A plain command, not a sub-make: `make -n` would run a line that calls $(MAKE).)
# --retries 2: an index that cannot be reached (PyTorch's, on a closed network) costs a second, not minutes.
PIP_DOWNLOAD = $(PYTHON_BOOT) -m pip download --quiet --retries 2 --only-binary=:all: --dest docker/wheelhouse/$(1) \
               $(if $(filter cpu,$(1)),$(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))) \
               -r requirements-$(1).txt -r requirements-bench.txt
FILL_WHEELS  = $(if $(filter host,$(WHEELS)),$(call PIP_DOWNLOAD,$(1)) &&)
CUDA_BUILD   = $(call FILL_WHEELS,cuda) $(IMAGE_BUILD) --build-arg TARGET=cuda -t $(CUDA_IMAGE) .
CPU_BUILD    = $(call FILL_WHEELS,cpu) $(IMAGE_BUILD) --build-arg TARGET=cpu -t $(CPU_IMAGE) .
# Containers never run as root; results on the bind mount end up owned by the caller (the script says how).
DOCKER_RUN   = DOCKER=$(DOCKER) DATA_DIR=$(DATA_DIR) bash scripts/container_run.sh

.DEFAULT_GOAL := help
.PHONY: help setup test test-fast lint smoke matrix report ablation bench-cpu bench-ci bench-baseline bench-gate-proof bands check-bands \
        docker-cuda bench-cuda docker-cpu bench-cpu-docker wheelhouse bench-mps

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-17s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(VENV)/.installed ## .venv with the pinned CPU set and dev tools, chimera (editable) and WordNet

$(VENV)/.installed: requirements-cpu.txt requirements-dev.txt pyproject.toml scripts/prepare_wordnet.sh \
                    scripts/torch_index_args.sh
	$(PYTHON_BOOT) -m venv $(VENV)
	$(VENV)/bin/pip install $$(PYTHON_BOOT=$(PYTHON_BOOT) bash scripts/torch_index_args.sh $(TORCH_INDEX)) \
	  -r requirements-cpu.txt -r requirements-dev.txt
	$(VENV)/bin/pip install -e . --no-deps
	PYTHON=$(PY) bash scripts/prepare_wordnet.sh
	touch $@

# The full tier gets the data folder resolved above, so the integration tests run wherever `make matrix` would.
# Test processes for `make test` (pytest-xdist): most tests train in a one-thread subprocess, so two keep two
# cores busy. --dist loadfile keeps a file's tests in one process: the ci matrix, a session fixture, is read
# by one file only, so it trains once.
TEST_WORKERS ?= 2
test: setup ## the full tier: unit + integration on real AG News (DATA_DIR); what CI runs
	CHIMERA_DATA_DIR=$(DATA_DIR) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# More pytest flags for test-fast, e.g. PYTEST_ARGS="-k doctor" or "-x".
PYTEST_ARGS ?=
test-fast: setup ## the fast tier: unit tests on synthetic data, none that trains in a subprocess (-m "not slow")
	$(PY) -m pytest -q tests/unit -m "not slow" $(PYTEST_ARGS)

lint: setup ## ruff on the Python sources, hadolint on the Dockerfiles
	$(VENV)/bin/ruff check chimera tests $(wildcard bench scripts)
	$(VENV)/bin/hadolint docker/Dockerfile

# What CI runs after `make test`: every command README.md and docs/ show, in a short form (scripts/readme_smoke.py).
# SMOKE_ARGS: e.g. --records DIR (real ci records for the doctor, loss gate and history), --strict, --only NAME...
SMOKE_ARGS  ?=
smoke: setup ## every command README.md and docs/ show, once, at toy sizes or tiny benchmark rounds; fails on a crash
	$(PY) scripts/readme_smoke.py $(SMOKE_ARGS)

matrix: setup ## train every cell of the ci profile -> runs/ci/
	$(VENV)/bin/chimera matrix --profile $(PROFILE) --out $(RUNS)/$(PROFILE) $(DATA_ARG) $(TRAIN_ARGS)

REPORT      ?= report
report: setup ## tables and plots from runs/ci (trains the matrix first if missing) -> report/
	test -d $(RUNS)/$(PROFILE) || $(MAKE) matrix
	$(VENV)/bin/chimera report $(RUNS)/$(PROFILE) --out $(REPORT)

bench-cpu: setup ## benchmarks on this machine's CPU, full shapes -> bench/results/cpu/bench.json
	mkdir -p $(RESULTS)/cpu
	CHIMERA_DEVICE=cpu $(VENV)/bin/$(BENCH) --benchmark-json=$(RESULTS)/cpu/bench.json

# A regression must show in two separate processes: step times move by up to ~13% from one process to
# the next (bench/README.md), so a failing first pass is confirmed by a second before the gate fails.
bench-ci: setup ## short CI pass (ci shapes) + speed gate against bench/baselines/cpu.json -> bench/results/ci/bench.json
	mkdir -p $(RESULTS)/ci
	CHIMERA_DEVICE=cpu $(VENV)/bin/$(CI_BENCH) --benchmark-json=$(RESULTS)/ci/bench.json
	$(VENV)/bin/chimera bench compare $(RESULTS)/ci/bench.json $(BASELINE) $(GATE_ARGS) || { \
	  echo "speed gate: regression in the first pass; confirming with a second pass"; \
	  CHIMERA_DEVICE=cpu $(VENV)/bin/$(CI_BENCH) --benchmark-json=$(RESULTS)/ci/bench-confirm.json && \
	  $(VENV)/bin/chimera bench compare $(RESULTS)/ci/bench-confirm.json $(BASELINE) $(GATE_ARGS); }

bench-baseline: setup ## regenerate bench/baselines/cpu.json with the short CI pass (on a quiet machine)
	CHIMERA_DEVICE=cpu $(VENV)/bin/$(CI_BENCH) --benchmark-json=$(BASELINE)

bench-gate-proof: setup ## 5 unchanged short passes + 1 with an injected slowdown, each through the gate
	PYTHON=$(PY) bash bench/prove_gate.sh $(BASELINE)

bands: setup ## ci matrix with seeds 0-4 -> runs/bands-ci, then the convergence bands chimera/gates/bands/ci.json
	for seed in $(BANDS_SEEDS); do $(VENV)/bin/chimera matrix --profile $(PROFILE) --seed $$seed --out $(RUNS)/bands-$(PROFILE) --quiet $(DATA_ARG) $(TRAIN_ARGS) || exit 1; done
	mkdir -p $(PUBLISH)/gates/bands
	$(VENV)/bin/chimera bands build $(RUNS)/bands-$(PROFILE) --min-seeds $(words $(BANDS_SEEDS)) --out $(PUBLISH)/gates/bands/$(PROFILE).json

ablation: setup ## which change of the fix matters: fixed/dense and its 18 variants, seeds 0-2 -> runs/ablation-ci/, report, the effects the doctor cites
	$(VENV)/bin/chimera matrix --profile $(PROFILE) --ablation fixed/dense --seeds $(ABLATION_SEEDS) --out $(RUNS)/ablation-$(PROFILE) --quiet $(DATA_ARG) $(TRAIN_ARGS)
	$(VENV)/bin/chimera report $(RUNS)/ablation-$(PROFILE) --out $(RUNS)/ablation-$(PROFILE)/report
	mkdir -p $(PUBLISH)/analysis
	cp $(RUNS)/ablation-$(PROFILE)/report/ablation.json $(PUBLISH)/analysis/ablation-$(PROFILE).json

check-bands: setup ## loss gate: the runs under runs/$(PROFILE) against chimera/gates/bands/$(PROFILE).json
	$(VENV)/bin/chimera bands check runs/$(PROFILE)

docker-cuda: ## build the CUDA image (docker/Dockerfile, TARGET=cuda; DOCKER=podman for podman)
	$(CUDA_BUILD)

bench-cuda: ## benchmarks on NVIDIA GPUs in a container, building the image if missing -> bench/results/cuda/
	@command -v nvidia-smi >/dev/null || { echo "bench-cuda needs an NVIDIA GPU with its driver and container toolkit on this host (no nvidia-smi here); on a CPU: make bench-cpu-docker" >&2; exit 1; }
	$(DOCKER) image inspect $(CUDA_IMAGE) >/dev/null 2>&1 || { $(CUDA_BUILD); }
	EXTRA_RUN_ARGS="--gpus all" $(DOCKER_RUN) $(RESULTS)/cuda $(CUDA_IMAGE)

docker-cpu: ## build the CPU image (docker/Dockerfile, TARGET=cpu; DOCKER=podman for podman)
	$(CPU_BUILD)

bench-cpu-docker: ## benchmarks on CPU in a container, building the image if missing -> bench/results/cpu-docker/
	$(DOCKER) image inspect $(CPU_IMAGE) >/dev/null 2>&1 || { $(CPU_BUILD); }
	$(DOCKER_RUN) $(RESULTS)/cpu-docker $(CPU_IMAGE)

# One folder per target: the CPU and CUDA builds of torch carry the same version number. pip skips wheels
# already there, so a second build downloads nothing.
wheelhouse: ## fill docker/wheelhouse/TARGET (cpu|cuda) with every wheel that image installs, with the host's pip
	$(call PIP_DOWNLOAD,$(TARGET))

bench-mps: ## on Apple silicon: .venv-mps from requirements-mps.txt, benchmarks on MPS -> bench/results/mps/
	@test "$$(uname -sm)" = "Darwin arm64" || { echo "bench-mps needs an Apple silicon Mac (macOS 14+); this is $$(uname -sm)" >&2; exit 1; }
	test -x $(MPS_PY) || $(PYTHON_BOOT) -m venv $(MPS_VENV)
	$(MPS_VENV)/bin/pip install -r requirements-mps.txt -r requirements-dev.txt
	$(MPS_VENV)/bin/pip install -e . --no-deps
	$(MPS_PY) -m nltk.downloader -q -d $(MPS_VENV)/nltk_data wordnet
	$(MPS_PY) -c 'import sys, torch; ok = torch.backends.mps.is_available(); ok or sys.exit("MPS is not available to torch " + torch.__version__ + ": needs Apple silicon, macOS 14+ and the arm64 torch of requirements-mps.txt")'
	mkdir -p $(RESULTS)/mps
	CHIMERA_DEVICE=mps $(MPS_VENV)/bin/$(BENCH) --benchmark-json=$(RESULTS)/mps/bench.json

# CUDA without Docker: a Python whose torch already has CUDA (CUDA_PY=python3), else .venv-cuda from
# requirements-cuda.txt. scripts/gpu_check.sh is the offline variant for a lent GPU (docs/hardware.md).
CUDA_VENV   ?= .venv-cuda
CUDA_PY     ?= $(CUDA_VENV)/bin/python
.PHONY: bench-cuda-native
bench-cuda-native: ## benchmarks on NVIDIA GPUs without Docker (fp32 and bf16/fp16 rows) -> bench/results/cuda-native/
	test -x $(CUDA_PY) || { $(PYTHON_BOOT) -m venv $(CUDA_VENV) && \
	  $(CUDA_VENV)/bin/pip install -r requirements-cuda.txt -r requirements-dev.txt && \
	  $(CUDA_VENV)/bin/pip install -e . --no-deps && PYTHON=$(CUDA_PY) bash scripts/prepare_wordnet.sh; }
	$(CUDA_PY) -c 'import sys, torch; torch.cuda.is_available() or sys.exit("bench-cuda-native: torch " + torch.__version__ + " sees no CUDA device (nvidia-smi; CUDA_PY=a python with CUDA torch)")'
	mkdir -p $(RESULTS)/cuda-native
	CHIMERA_DEVICE=cuda PYTHONPATH=. $(CUDA_PY) -m pytest bench --benchmark-only --bench-precision native \
	  --benchmark-json=$(RESULTS)/cuda-native/bench.json $(DATA_ARG)
