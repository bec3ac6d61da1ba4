# medmat: the two set-up commands of the README.
#   make demo  - create .venv, install, run the main job on the built-in phantoms, say where results are
#   make test  - install the test extras and run the suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= results/demo

.PHONY: install demo test clean-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is pinned (torch==2.13.0, a CPU build) in pyproject.toml, so pip does not pull CUDA packages.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/medmat info --data phantom:24
	$(BIN)/medmat label --data phantom:16 --output $(DEMO)/labels --method if
	$(BIN)/medmat baseline --data phantom:16 --methods cf,knn,lbdm,if,bayes --region unknown,whole --output $(DEMO)/baseline
	$(BIN)/medmat train --config demo --run-dir $(DEMO)/run --resume
	$(BIN)/medmat phantoms --cases 6 --seed 1000 --output $(DEMO)/new-phantoms
	$(BIN)/medmat predict --input $(DEMO)/new-phantoms/imagesTr --model $(DEMO)/run --output $(DEMO)/predictions
	$(BIN)/medmat evaluate --run $(DEMO)/run --output $(DEMO)/evaluation
	@echo
	@echo "Demo results are in $(DEMO)/:"
	@echo "  labels/       alpha labels built from the phantoms' annotators (alphasTr/, trimapsTr/, examples.png)"
	@echo "  baseline/     classical matting tables (baseline_unknown.md, baseline_whole.md) and examples.png"
	@echo "  run/          Medical Matting trained on 18 phantoms (checkpoint, log.csv, curves.png, metrics.json)"
	@echo "  predictions/  alpha, uncertainty map, lesion uncertainty and 8 sampled masks for 6 new phantoms"
	@echo "  evaluation/   Table IV / V-style metrics on the 6 held-out phantoms (summary.md) and examples.png"

test: install
	$(BIN)/python -m pytest -q

clean-demo:
	rm -rf $(DEMO)
