# The two commands of the README, and a few helpers around them.
VENV ?= .venv
STAMP := $(VENV)/.ensflow-installed
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean-demo chromium nginx

$(STAMP): pyproject.toml envs/bootstrap.sh
	bash envs/bootstrap.sh $(VENV) inference,cluster,dev
	touch $@

## Run the embedded demo cycle end to end (resumes a partial run).
demo: $(STAMP)
	$(BIN)/snakemake --profile profiles/demo

## Run the test suite.
test: $(STAMP) chromium
	$(BIN)/pytest

## Debian's headless Chromium: the run report's screenshot test renders the page with it.
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## Debian's nginx: bench_cgan serves its open-data mirror with it (anonymous S3-style GETs).
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile rules/
	$(BIN)/snakemake --lint -n

bench: $(STAMP) nginx
	$(BIN)/python bench/bench_grib_write.py
	$(BIN)/python bench/bench_state_encode.py
	$(BIN)/python bench/bench_member_chain.py
	$(BIN)/python bench/bench_purge.py
	$(BIN)/python bench/bench_prepare_input.py
	$(BIN)/python bench/bench_quest.py
	$(BIN)/python bench/bench_cgan.py
	$(BIN)/python bench/bench_gpu_paced.py

clean-demo:
	rm -rf results logs benchmarks scratch bucket demo stores .snakemake
