#!/usr/bin/env bash
# Download, on a machine with PyPI, the wheels bench/bench_gpu.sh installs on the device machine
# (which reaches no registry and lacks these): into .whl/ (git-ignored), to be named in `carry`.
# Versions are the ones the CPU tests ran with; the device image brings torch, transformers,
# huggingface_hub, safetensors, tokenizers, numpy, pillow and pytest itself.
set -eu
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
$py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl diffusers==0.42.1 pydantic==2.14.4 pydantic_core==2.50.5 pydantic-settings==2.16.3 \
  annotated-types==0.8.0 typing-inspection==0.4.5 python-dotenv==1.2.4 importlib_metadata==10.2.0
ls -la .whl
du -sh .whl
