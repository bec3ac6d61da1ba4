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
	$(BIN)/medmat info --data phantom:16
	$(BIN)/medmat label --data phantom:16 --output $(DEMO)/labels --method if
	$(BIN)/medmat baseline --data phantom:16 --methods cf,knn,lbdm,if,bayes --region unknown --output $(DEMO)/baseline
	@echo
	@echo "Demo results are in $(DEMO)/:"
	@echo "  $(DEMO)/labels/       alpha labels built from the phantoms' annotators (alphasTr/, trimapsTr/, examples.png)"
	@echo "  $(DEMO)/baseline/     classical matting table (baseline.md) and examples.png"

test: install
	$(BIN)/python -m pytest -q

clean-demo:
	rm -rf $(DEMO)
