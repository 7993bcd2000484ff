# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install broker-start broker-stop bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Run the whole continuous-training loop on a local broker; writes demo-out/summary.json.
demo: $(STAMP)
	$(PY) -m stream_ct demo --out demo-out

## Install, start a throwaway broker, run every test (unit and integration). Two pytest workers:
## the integration tests mostly wait on services, so two share the machine well.
test: $(STAMP)
	$(PY) -m pytest -q -ra -n 2 --dist load $(PYTEST_ARGS)

broker-start: $(STAMP)
	$(PY) -m stream_ct broker start

broker-stop: $(STAMP)
	$(PY) -m stream_ct broker stop

clean:
	rm -rf demo-out registry .pytest_cache stream.jsonl stream.jsonl.truth.json
