#!/usr/bin/env bash
# The GPU session that trained the shipped models: CLIP, VAE, UNet in sequence, each on a wall-time
# budget, then fp16 export and a sample grid. Results land in OUT as tars (the device tool returns
# at most 8 files of 16 MB). Run from a folder holding app/ with: gpu_job.sh DATA OUT [MIN_CLIP MIN_VAE MIN_UNET]
set -u
data=$1; out=$2; mc=${3:-1.5}; mv=${4:-2}; mu=${5:-4.5}
runs=/tmp/runs; models=/tmp/models
export PYTHONUNBUFFERED=1
py="${PYTHON:-python3} -m app.train"
quiet() { grep -v -e 'it/s' -e '^Loading weights' -e 'torchvision' ; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
$py clip --data "$data" --out $runs/clip --steps 100000 --batch 512 --lr 7e-4 --minutes "$mc" 2>&1 | quiet
$py vae --data "$data" --out $runs/vae --steps 100000 --batch 128 --lr 4e-4 --minutes "$mv" 2>&1 | quiet
$py unet --data "$data" --clip $runs/clip/model --vae $runs/vae/model --out $runs/unet \
  --steps 1000000 --batch 256 --lr 4e-4 --minutes "$mu" 2>&1 | quiet
$py export --runs $runs --out $models 2>&1 | quiet
tar -C $models -cf "$out/clip.tar" clip
tar -C $models/diffusion -cf "$out/unet.tar" unet
tar -C $models --exclude=diffusion/unet -cf "$out/diffusion_rest.tar" diffusion
tar -C $runs -cf "$out/logs.tar" clip/log.jsonl vae/log.jsonl unet/log.jsonl
$py sample --pipeline $models/diffusion --png "$out/grid.png" --device cuda 2>&1 | quiet
