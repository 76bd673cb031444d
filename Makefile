# The two set-up commands of README.md: `make demo` (main job on the demo cohort) and `make test`.
# Both create .venv on first use. CORES=16 make demo on a bigger machine.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= 2
STAMP  := $(VENV)/.installed

.PHONY: install demo preprocess test clean-results

install: $(STAMP)

# torch is installed first and pinned with torchvision (their PyPI pairing); nimare only ships the
# MNI152NLin6Asym template we read, and its own pins clash with ours, so it comes without dependencies.
# Every package that envs/headmri.yaml pins is installed at that version (a constraints file made from
# the env's pip section), so the tests run exactly what a `--use-conda` job runs, whatever PyPI has
# released since (tests/test_envs.py checks it).
$(STAMP): pyproject.toml envs/headmri.yaml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	sed -n 's/^ *- \([A-Za-z0-9_.-]*==[^ ]*\)$$/\1/p' envs/headmri.yaml > $(VENV)/constraints.txt
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -c $(VENV)/constraints.txt -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps nimare==0.22.1
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)

preprocess: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) preprocess_all

# The suite runs on TEST_WORKERS pytest-xdist processes, each test file on one of them (its module fixtures
# are built once), the files with slow tests handed out first (tests/conftest.py); the workflow tests share
# one preprocessed cohort between the workers (tests/workflow_runner.py).
# Serial (one process, as a plain `pytest`): make test TEST_WORKERS=0.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

clean-results:
	rm -rf results
