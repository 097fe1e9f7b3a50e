#!/usr/bin/env bash
# Issue 22's one prepared GPU check: the GPU-marked tests, then bench_diffusion.py on SD-1.5-shaped
# random weights at 512x512 (20 steps, CFG: batch 2 through the UNet) with one row per optimisation
# (app.diffusion.accel). Writes $OUT/gpu_table.md, $OUT/gpu.txt, $OUT/pytest.log, $OUT/bench.log.
#
#   here, once:       bash bench/gpu_wheels.sh         (the missing packages into .whl/, git-ignored)
#   device tool:      run  command="bash bench/bench_gpu.sh"  carry=[".whl"]  timeout_s=590
#   CPU dry run:      bash bench/bench_gpu.sh --dry-run   (same steps, tiny sizes, dynamo's eager backend)
set -u -o pipefail
cd "$(dirname "$0")/.."
dry=0
[ "${1:-}" = "--dry-run" ] && dry=1
out=${OUT:-/tmp/noisescope-gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
py=${PYTHON:-python3}
if [ $dry = 0 ] && ls .whl/*.whl >/dev/null 2>&1; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  $py -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'available', torch.cuda.is_available(), 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
} 2>&1 | tee "$out/gpu.txt"
table=$out/gpu_table.md
{ echo "# bench/bench_gpu.sh on ${gpu:-cpu (dry run)}, $(date -u '+%F %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null)"
  echo; sed 's/^/    /' "$out/gpu.txt"; echo; } > "$table"

if [ $dry = 1 ]; then
  tests=(tests/diffusion/test_accel.py)  # the CPU side of the same code; the gpu-marked ones skip here
  bench=(--device cpu --sd15-shaped --accel --size 64 --steps 2 --repeats 1 --compile-backend eager --threads 2)
  limit=1500
else
  tests=(tests/engine/test_gpu.py tests/engine/test_gpu_accel.py tests/gan/test_gan_cuda.py -m gpu)
  bench=(--sd15-shaped --accel --steps 20 --size 512 --repeats 3)
  limit=420
fi

timeout 240 $py -m pytest -p no:cacheprovider -rs "${tests[@]}" 2>&1 | tee "$out/pytest.log"
echo "pytest ${tests[*]}: $(grep -E '(passed|failed|error|skipped)' "$out/pytest.log" | tail -1)" >> "$table"
echo >> "$table"

timeout "$limit" $py bench/bench_diffusion.py "${bench[@]}" --markdown "$table" 2>&1 \
  | grep -v -e 'it/s]' -e 'Loading weights' -e torchvision | tee "$out/bench.log"
rc=$?
[ $rc = 0 ] || echo "bench_diffusion.py exited $rc (124: over ${limit}s); its partial rows are in bench.log" >> "$table"
echo "command: python bench/bench_diffusion.py ${bench[*]}" >> "$table"
cat "$table"
