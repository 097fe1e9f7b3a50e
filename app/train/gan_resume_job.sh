#!/usr/bin/env bash
# The GPU sessions that made GAN stages 7 and 12: unpack a run carried by `python -m app.train.gan_carry
# pack`, resume it in segments of MINUTES at batch BATCH (default 64), export G_ema and score it (GAN
# rows, 200 prompts x 2 seeds) after each segment unless EVAL=0 (no judge carried), then pack the end
# state. Run from the repository root with data/emoji:
#   gan_resume_job.sh CARRY OUT MINUTES SEGMENT...     (e.g. gan_resume_job.sh carry out 3.9 c d)
set -u -o pipefail
carry=$1; out=$2; minutes=$3; shift 3
run=${RUN:-/tmp/gan_run}; py="${PYTHON:-python3}"; log=$out/log.txt
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$out"
nvidia-smi -L 2>&1 | tee -a "$log"
[ -f "$run/checkpoint.pt" ] || $py -m app.train.gan_carry unpack "$carry" "$run" 2>&1 | tee -a "$log"
for seg in "$@"; do
  $py -m app.train.gan --data data/emoji --clip models/clip --out "$run" --resume --steps 100000000 \
    --checkpoint-every 1000 --batch "${BATCH:-64}" --max-minutes "$minutes" --export "$out/$seg" 2>&1 \
    | tr '\r' '\n' | grep -v 'it/s' | tee -a "$log"
  [ "${EVAL:-1}" = 0 ] && continue
  $py -m app evaluate --data data/emoji --judge models/judge --gan "$out/$seg" --clip models/clip --diffusion '' \
    --prompts 200 --seeds 2 --sweep '' --batch 40 --device cuda --json "$run/eval_$seg.json" 2>&1 \
    | tr '\r' '\n' | grep -v 'it/s' | tee -a "$log"
done
$py -m app.train.gan_carry pack "$run" "$out/parts" 2>&1 | tee -a "$log"
cp "$run/log.jsonl" "$out/log.jsonl"
