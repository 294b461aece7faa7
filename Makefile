# Two commands matter: `make run` (the service locally, embedded S3, no AWS account, no Docker) and
# `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test fuzz lint fmt sam-tools build validate bench bench-serving bench-batch bench-training bench-explain bench-search clean

$(VENV)/.installed: requirements-dev.txt layers/mlservice/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The SAM CLI pins its own boto3, so it lives in a venv of its own.
$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check aws-sam-cli==1.170.0
	touch $@

sam-tools: $(SAM_VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/python -m local.server

test: $(VENV)/.installed $(SAM_VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Hypothesis fuzzing of every route with 20,000 generated requests, new random ones each run (`make test` runs
# a fixed 2,000). FUZZ_EXAMPLES=N for another number.
FUZZ_EXAMPLES ?= 20000
fuzz: $(VENV)/.installed
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/test_fuzz.py -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .

fmt: $(VENV)/.installed
	$(BIN)/ruff format .

validate: $(SAM_VENV)/.installed
	$(SAM_VENV)/bin/sam validate --lint

build: $(SAM_VENV)/.installed
	$(SAM_VENV)/bin/sam build

# Every benchmark, the serving one first; BENCH_ARGS (e.g. --quick) goes to each.
bench: bench-serving bench-batch bench-training bench-explain bench-search

# Online serving against bare scikit-learn: warm handler latency (1, 100, 10,000 rows; six models), cold start and
# peak memory of the predict function vs a minimal joblib script, batch rows/s; ~2 min on 2 cores, --quick ~1.
# Prints a table of ratios and writes benchmarks/results/serving.json.
bench-serving: $(VENV)/.installed
	$(BIN)/python benchmarks/serving.py $(BENCH_ARGS)

# Batch prediction throughput (handler vs a bare numpy loop) and peak memory vs file size; ~3-4 min on 2 cores.
# BENCH_ARGS=--quick for a version of under a minute.
bench-batch: $(VENV)/.installed
	$(BIN)/python benchmarks/batch_throughput.py $(BENCH_ARGS)

# The training cost estimate against measured fits (estimate/actual per configuration); BENCH_ARGS=--quick.
bench-training: $(VENV)/.installed
	$(BIN)/python benchmarks/training_cost.py $(BENCH_ARGS)

# Explanations: per algorithm, explain's milliseconds and model evaluations for 1, 10 and 100 rows against the raw
# predict call, and the additivity error; ~1 minute (BENCH_ARGS=--quick: 10 rows only).
bench-explain: $(VENV)/.installed
	$(BIN)/python benchmarks/explain.py $(BENCH_ARGS)

# Distributed search over the train queue (embedded S3 + SQS, spawned workers): wall time with 1 worker vs 8,
# speed-up against min(8, cores), and the async path's overhead per job; ~10 min (BENCH_ARGS=--quick: ~1 minute).
bench-search: $(VENV)/.installed
	$(BIN)/python benchmarks/search.py $(BENCH_ARGS)

clean:
	rm -rf .aws-sam
