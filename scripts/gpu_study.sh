#!/usr/bin/env bash
# The GPU runs behind BENCHMARKS.md's measurement section and docs/gpu-study/, through the project's own commands.
# Run on the lent H100 (see README "GPU runs"), from the repository root, with the wheels from scripts/gpu_wheels.sh:
#   bash scripts/gpu_study.sh stock   # energy/speed checks (led_base 1024 and 4096 + bare loops), the stock fp32 grid, infer
#   bash scripts/gpu_study.sh fast    # the fast-path grid (bf16, fused kernels), infer, a same-function check
# Each stage has its own time limit so the call always ends by packing what finished into $OUT/<part>.tar.gz
# (metrics.json, configs, logs, emissions.csv; no checkpoints).
set -uo pipefail
PART=${1:?usage: gpu_study.sh stock|fast}
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
T0=$(date +%s)
source scripts/gpu_env.sh > "$OUT/log.txt" 2>&1 || { cat "$OUT/log.txt"; exit 1; }
S=/tmp/study
PY="python3"
left() { echo $(( ${BUDGET:-575} - ($(date +%s) - T0) )); }
stage() {  # stage <max seconds> <command...>: runs with min(max, time left - reserve)
  local max=$1; shift
  local t=$(( $(left) - ${RESERVE:-25} )); [ "$t" -gt "$max" ] && t=$max
  if [ "$t" -lt 20 ]; then echo "SKIPPED (no time left): $*" | tee -a "$OUT/log.txt"; return 0; fi
  echo "=== [$(( $(date +%s) - T0 ))s] stage (limit ${t}s): $*" | tee -a "$OUT/log.txt"
  timeout -s INT -k 15 "$t" "$@" >> "$OUT/log.txt" 2>&1
  echo "=== [$(( $(date +%s) - T0 ))s] exit $?" | tee -a "$OUT/log.txt"
}
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv > "$OUT/gpu.txt" 2>&1

# the grid: random-init real-size models on the embedded data, a fixed budget of optimizer steps per job
GRID=(paths.output_dir=$S model.pretrained=false strategy=single_gpu batch_size=paper
      trainer.max_steps=${STEPS:-5} data.val_every_steps=${STEPS:-5} data.synthetic.n_train=96 data.synthetic.n_validation=16
      '~callbacks.last_checkpoint' callbacks.energy.measure_power_secs=5)
MODELS=led_base,led_large,bigbird_large

if [ "$PART" = stock ]; then
  # Energy and speed measured by the callbacks, against a bare loop on the same model and batch (issue 3)
  stage 140 $PY train.py -m name=gpu_measure model=led_base seq_len=1024,4096 data=synthetic trainer.max_steps=50 \
      data.val_every_steps=25 data.synthetic.n_train=256 data.synthetic.n_validation=16 paths.output_dir=$S \
      model.pretrained=false strategy=single_gpu batch_size=paper '~callbacks.last_checkpoint' '~callbacks.best_checkpoint'
  for L in 1024 4096; do
    stage 45 sh -c "$PY benchmarks/bare_loop.py model=led_base model.pretrained=false seq_len=$L strategy=single_gpu \
      batch_size=paper data.synthetic.n_train=256 steps=40 paths.output_dir=$S >> $OUT/bare_loop.jsonl"
  done
  # The paper's grid with the stock HF modules in fp32 (the paper's setting)
  stage 170 $PY train.py -m name=gpu_study data=synthetic model=$MODELS seq_len=1024,2048,3072,4096 "${GRID[@]}"
  stage 80 $PY train.py -m name=gpu_study data=synthetic_qa model=$MODELS seq_len=1024,4096 "${GRID[@]}"
else
  FAST=(model.attn_impl=fast trainer.precision=bf16-mixed module.fused_optimizer=true)
  stage 260 $PY train.py -m name=gpu_study data=synthetic model=$MODELS seq_len=1024,2048,3072,4096 "${GRID[@]}" "${FAST[@]}"
  stage 120 $PY train.py -m name=gpu_study data=synthetic_qa model=$MODELS seq_len=1024,4096 "${GRID[@]}" "${FAST[@]}"
fi
# inference on every finished run of this part (validation split, batch 16), then pack the records
RESERVE=20 stage 150 $PY infer.py run_dir=$S/sweeps/gpu_study paths.output_dir=$S
if [ "$PART" = fast ]; then
  RESERVE=15 stage 60 $PY benchmarks/bench_fast.py --out "$OUT/check" --check-only --models led_base --check-len led=1024
fi
tar czf "$OUT/$PART.tar.gz" -C "$S" --exclude='*.ckpt' --exclude='*/model/*' --exclude='*/.cache*' sweeps 2>/dev/null
echo "=== [$(( $(date +%s) - T0 ))s] packed $(du -h "$OUT/$PART.tar.gz" | cut -f1)" | tee -a "$OUT/log.txt"
tail -n 60 "$OUT/log.txt" | grep -E "===|INFO\] - (led|big)|error" | tail -n 60
