#!/usr/bin/env bash
# The GPU session that trained the shipped GAN: train on a wall-time budget, export G_ema, then score
# it (GAN rows and the truncation sweep) on the GPU. Run from a folder holding app/, data/emoji/,
# clip/ and judge/:  gan_job.sh OUT [MINUTES]
set -u
out=$1; minutes=${2:-4}; data=${DATA:-data/emoji}; device=${DEVICE:-cuda}
export PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
$py -c "import torch; print('torch', torch.__version__)"
$py -m app.train.gan --data "$data" --clip clip --out runs/gan --steps 1000000 --max-minutes "$minutes" \
  --checkpoint-every 2000 --export "$out/gan" 2>&1 | tr '\r' '\n' | grep -v -e 'it/s]$' -e '^gan: '
cp runs/gan/log.jsonl runs/gan/samples.png "$out/"
[ -f judge/judge.json ] || { echo "no judge/: skipping the GPU evaluation"; exit 0; }
$py -m app.train.evaluate --data "$data" --judge judge --gan "$out/gan" --clip clip --diffusion '' \
  --device "$device" --batch 256 --json "$out/eval_gpu.json" 2>&1 | grep -v -i warn
