# The two commands of the README:
#   make demo   set up, then run LabBatch's main job: the local-mode tour (`labbatch demo`)
#   make test   set up, then run the test suite
# Set-up is idempotent: a Python venv in .venv and the pinned CDK CLI + Node 22 in node_modules,
# plus .venv-snakemake: Snakemake and its TES and S3 plugins, which pin py-tes 0.4 where the
# suite uses py-tes 1.1, so they live apart (the Snakemake-on-TES tests drive it).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# jsii and the CDK CLI must both run on the pinned Node 22, not the machine's Node 20.
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(BIN):$(PATH)

.PHONY: setup demo synth images engines test rehearse docs clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "LabBatch needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -e .
	touch $@

# The workflow engines the TES tests drive from the host (containers/snakemake/requirements.txt
# is also what the task image labbatch-snakemake:local installs: the same Snakemake both sides).
engines: .venv-snakemake/.installed

.venv-snakemake/.installed: containers/snakemake/requirements.txt
	test -x .venv-snakemake/bin/python || $(PYTHON) -m venv .venv-snakemake
	.venv-snakemake/bin/python -m pip install --quiet --no-deps -r containers/snakemake/requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/labbatch demo

synth: setup
	cdk synth --quiet
	@echo "Synthesized: $$(ls cdk.out/*.template.json | xargs -n1 basename | sed 's/.template.json//' | tr '\n' ' ')"

# Local images from Debian packages (no registry): containers/build_images.sh says what and why.
# Cached by a hash of each image's inputs, so a second run takes seconds.
images: setup
	PYTHON=$(BIN)/python containers/build_images.sh

# With a container engine, the container tests need the images (cheap when cached); without
# one they skip, except under CI=true, where .ci/run has started an engine.
# --dist loadgroup: the instance rehearsal (xdist_group "rehearsal") boots its instances in one worker.
test: setup engines
	@if docker info >/dev/null 2>&1; then $(MAKE) --no-print-directory images; \
	else echo "make test: no container engine answers ('docker info' failed): not building images, container tests will skip"; fi
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup

# The instance rehearsal alone (#24 items 1-2): the launch template's user data booted under systemd
# + cloud-init in labbatch-instance:rehearsal (containers/instance/build.sh, cached), then jobs
# started on it as the ECS agent starts them (the local images pushed into its registry). Needs
# root, Docker, mmdebstrap and loop devices; about six minutes once the images are built.
rehearse: images
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/rehearsal

# The docs site (mkdocs.yml, docs/), served with live reload at http://127.0.0.1:8000;
# `make test` builds it with --strict (tests/docs/test_docs_site.py).
docs: setup
	$(BIN)/python -m mkdocs serve

clean:
	rm -rf cdk.out $(VENV) .venv-snakemake node_modules
