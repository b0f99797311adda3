# The archivist's interface. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CENSUS := $(BIN)/census
RUN_DIR ?= runs/samples
LS_PORT ?= 8090
BROWSE_PORT ?= 8001
export OMP_THREAD_LIMIT := 1

APT_PACKAGES := tesseract-ocr tesseract-ocr-cat tesseract-ocr-spa tesseract-ocr-fra tesseract-ocr-eng \
	fonts-dancingscript fonts-kristi fonts-kaushanscript fonts-dkg-handwriting fonts-breip \
	fonts-ecolier-court fonts-comic-neue fonts-joscelyn fonts-klee fonts-yusei-magic \
	fonts-lobster fonts-sjfonts fonts-havana \
	fonts-dejavu-core poppler-utils chromium chromium-driver

.PHONY: help install system-packages fonts venv run test test-all bench data train adapt review review-install browse clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

install: system-packages venv ## install Debian packages (as root) and the virtualenv

system-packages: ## apt-get install tesseract, handwriting fonts, poppler, chromium (skipped when present)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing" >&2; \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root (or apt-get install $$missing)" >&2; exit 2; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed ## create .venv with the pinned Python dependencies

run: install ## run the pipeline on the bundled samples/ and print where the results are
	$(CENSUS) run samples/pages --out $(RUN_DIR)

test: install ## run the default test suite (fast; no slow or gpu tests)
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-all: install ## run every test including slow ones
	$(BIN)/python -m pytest -q -p no:cacheprovider -m 'not gpu'

bench: install ## benchmark: pages/min, stages, RSS, 1→2 workers, Dask, baselines, recogniser, review, 1M dataset → bench.json
	$(BIN)/python -m pipeline.evaluation.bench

adapt: install ## fine-tune on RUN_DIR's reviewed cells, read its untouched cells again with that model (RESET=1: back to the shipped one)
	$(CENSUS) adapt $(RUN_DIR) $(if $(RESET),--reset)

review-install: venv ## install Label Studio 1.23.2 in its own virtualenv .venv-ls (once; takes minutes)
	$(CENSUS) review install

review: review-install ## start Label Studio (port LS_PORT) and push RUN_DIR's review queue
	$(CENSUS) review serve --port $(LS_PORT) --document-root $(dir $(abspath $(RUN_DIR)))
	$(CENSUS) review push $(RUN_DIR)

browse: install ## web view of RUN_DIR on 127.0.0.1:BROWSE_PORT (datasette, embargo-masked copy)
	$(CENSUS) browse $(RUN_DIR) --port $(BROWSE_PORT)

FONTSOURCE := pipeline/synth/fontsource.tsv
FONTSOURCE_DIR := /usr/local/share/fonts/fontsource
fonts: ## install the npm handwriting fonts listed in pipeline/synth/fontsource.tsv (pinned, checksummed)
	@mkdir -p $(FONTSOURCE_DIR)
	@grep -v '^#' $(FONTSOURCE) | while IFS=$$'\t' read -r name version sha1 licence; do \
	  font=$$name-latin-400-normal.woff; [ -f $(FONTSOURCE_DIR)/$$font ] && continue; \
	  echo "installing font $$name $$version ($$licence)" >&2; tmp=$$(mktemp -d); \
	  curl -fsSL -o $$tmp/package.tgz https://registry.npmjs.org/@fontsource/$$name/-/$$name-$$version.tgz \
	    && echo "$$sha1  $$tmp/package.tgz" | sha1sum -c --quiet \
	    && tar xzf $$tmp/package.tgz -C $$tmp package/files/$$font package/LICENSE \
	    && cp $$tmp/package/LICENSE $(FONTSOURCE_DIR)/$$name.LICENSE \
	    && cp $$tmp/package/files/$$font $(FONTSOURCE_DIR)/$$font; \
	  status=$$?; rm -rf $$tmp; [ $$status = 0 ] || { echo "font $$name: download or checksum failed" >&2; exit 1; }; \
	done

DATA ?= ../shared/data
DATA_EXTERNAL ?= data-external
DATA_REMOTE ?= https://github.com/{repo}.git
data: venv ## clone the external CC-BY handwritten ground truth at its pinned commits into DATA_EXTERNAL (network)
	$(BIN)/python -m pipeline.htr.sources $(DATA_EXTERNAL) '$(DATA_REMOTE)'

train: install ## train the handwriting recogniser (7 stages, GPU if present), export to models/, build its LM, recalibrate
	$(CENSUS) train --config models/crnn.yaml
	$(CENSUS) train --config models/crnn-stage2.yaml
	$(CENSUS) train --config models/crnn-stage3.yaml
	$(CENSUS) train --config models/crnn-stage4.yaml
	$(CENSUS) train --config models/crnn-stage5.yaml
	$(CENSUS) train --config models/crnn-stage6.yaml
	$(CENSUS) train --config models/crnn-stage7.yaml --export models/crnn.onnx
	$(CENSUS) lm $(DATA)
	$(CENSUS) calibrate $(DATA) --check-split test

clean: ## remove run outputs (not the virtualenv)
	rm -rf runs test-artifacts
