# OADP-Flow: `make demo` and `make test` work on a fresh clone with only Python 3.11 installed.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CORES ?= 2
# pip's wheel cache keeps the mmcv wheel built from source (~11 min once): never pass --no-cache-dir.
PIP_INSTALL := $(PIP) install --disable-pip-version-check -q -c constraints.txt

.PHONY: install demo test test-presets bench lint format clean profile test-slurm
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -U pip wheel "setuptools<81"
	@# torch first and alone, so that the CPU wheel is taken and no resolve pulls a CUDA build.
	$(PIP_INSTALL) torch==2.13.0
	@# mmcv 2.1.0 has no wheel for this torch: build its ops against the installed torch.
	$(PY) -c "import mmcv.ops" 2>/dev/null || MMCV_WITH_OPS=1 $(PIP_INSTALL) --no-build-isolation mmengine mmcv==2.1.0
	$(PIP_INSTALL) -e ".[dev]"
	$(PY) -c "import pipeline.core.compat, mmcv.ops, mmdet, open_clip, snakemake; print('install ok')"
	touch $@

demo: install
	$(VENV)/bin/snakemake --cores $(CORES)

# -rs lists every skip with its reason; with CI=true a skipped preset or SLURM test fails the run unless no GPU was
# the reason (tests/conftest.py). The presets and the SLURM cluster have their own targets below.
test: install
	$(VENV)/bin/pytest -q -rs -m "not presets and not slurm" --durations=15

# Both real-data presets end to end under dry_run on a generated reference-style tree (tests/test_presets_e2e.py:
# ViT-B-32, R50-FPN at the presets' resolutions, seeded random weights; 20 min on 2 quiet cores; run by .ci/run).
test-presets: install
	$(VENV)/bin/pytest -q -rs -s -m presets tests/test_presets_e2e.py tests/test_plan.py --durations=5

bench: install
	$(PY) -m benchmarks

lint: install
	$(VENV)/bin/ruff check pipeline tests
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules
	$(VENV)/bin/snakemake --lint

format: install
	$(VENV)/bin/ruff format pipeline tests
	$(VENV)/bin/snakefmt Snakefile workflow/rules

clean:
	rm -rf results .snakemake

# `snakemake --profile slurm`: link workflow/profiles/slurm into Snakemake's user profile folder
# (~/.config/snakemake, or $XDG_CONFIG_HOME/snakemake); a real folder of that name is left alone.
profile:
	@dir="$$($(PY) -c 'from snakemake.cli import get_appdirs; print(get_appdirs().user_config_dir)' 2>/dev/null \
		|| echo "$${XDG_CONFIG_HOME:-$$HOME/.config}/snakemake")"; \
	if [ -e "$$dir/slurm" ] && [ ! -L "$$dir/slurm" ]; then \
		echo "$$dir/slurm exists and is not a link: not replaced (use --profile workflow/profiles/slurm)" >&2; exit 1; fi; \
	mkdir -p "$$dir" && ln -sfn "$(CURDIR)/workflow/profiles/slurm" "$$dir/slurm" && \
	echo "snakemake --profile slurm -> $$dir/slurm -> $(CURDIR)/workflow/profiles/slurm"

# The SLURM profile on a real single-node cluster: installs slurm-wlm + munge (apt-get, as root) when missing,
# starts munged/slurmctld/slurmd, runs the demo's cheap stages through `snakemake --profile slurm`, stops them.
test-slurm: install
	OADP_TEST_SLURM=1 $(VENV)/bin/pytest -q -rs -s tests/test_slurm.py
