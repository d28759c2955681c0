# The two quick-start commands (README): `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml envs/constraints.txt | cksum | cut -d' ' -f1)
CORES ?= 2
# Threads of one job: half the cores (at least 1), so that two jobs share the machine. On 2 cores,
# two single-thread jobs keep both cores busy, where one 2-thread job leaves the second core idle
# whenever the other ready job also asks for 2 (README "Run time of the default").
JOB_THREADS ?= $(shell echo $$(( $(CORES) > 3 ? $(CORES) / 2 : 1 )))

.PHONY: setup run report test test-cluster bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml envs/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c envs/constraints.txt -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

# Run the embedded default end to end, then render the HTML report.
run: setup
	$(VENV)/bin/snakemake --cores $(CORES) --max-threads $(JOB_THREADS)
	$(VENV)/bin/snakemake --report results/report.html --report-metadata results/report/metadata.yaml
	@echo "Report: results/report.html"

# The test suite (unit tests, workflow tests on the smoke config, lint).
test: setup
	$(VENV)/bin/python -m pytest -ra

# Only the real-SLURM tests (tests/cluster: needs root + apt-get, else skipped). `make test` runs them too.
test-cluster: setup
	$(VENV)/bin/python -m pytest -ra -s -m slurm tests/cluster

# Benchmarks that print timings (see README "Tests and benchmarks").
bench: setup
	$(VENV)/bin/python benchmarks/bench_dryrun.py

lint: setup
	$(VENV)/bin/snakemake --lint
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules

clean:
	find results -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf .snakemake
