#!/usr/bin/env bash
# One device call: does a batch that batch_size=auto finds within a cap train held to it, validations included?
# The GPU contract test, then LED-large at 4096 tokens (random weights: memory, not accuracy) through train.py held
# to 48 GiB with two validations, the cell that ran out of memory in its first validation on the H200 (call 16)
# (call 18 left out strategy=single_gpu and trained on the CPU; batch_size=auto under a CPU strategy is refused now).
#   bash scripts/gpu_memory_contract.sh   # carry .whl and .gpu_commit; everything lands in $OUT
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
T0=$(date +%s)
source scripts/gpu_env.sh > "$OUT/log.txt" 2>&1 || { cat "$OUT/log.txt"; exit 1; }
export TRANSFORMERS_VERBOSITY=error TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache
[ -f .gpu_commit ] && export STUDY_GIT_COMMIT=$(cat .gpu_commit)
DEFAULT_BUDGET=${BUDGET:-300} STAGE_RESERVE=10 STAGE_KILL_S=15
source scripts/gpu_stage.sh  # left, stage
stage 110 python3 -m pytest -m gpu -q -p no:cacheprovider tests/lightning_modules/test_batch_size.py -k cap
stage 400 python3 train.py model=led_large model.pretrained=false data=synthetic strategy=single_gpu impl=fast_graph seq_len=4096 \
    batch_size=auto batch_size_memory_gib=48 trainer.max_steps=30 data.val_every_steps=15 data.synthetic.n_validation=32 \
    '~callbacks.last_checkpoint' '~callbacks.best_checkpoint' '~callbacks.early_stopping' \
    paths.output_dir=/tmp/contract hydra.run.dir=/tmp/contract/led_large_4096
cp /tmp/contract/led_large_4096/metrics.json "$OUT/led_large_4096_metrics.json" 2>/dev/null
grep -h "batch_size=auto\|memory:\|validation rgm\|Error" /tmp/contract/led_large_4096/train.log > "$OUT/led_large_4096_log.txt" 2>/dev/null
echo "=== [$(( $(date +%s) - T0 ))s] done" | tee -a "$OUT/log.txt"
tail -25 "$OUT/log.txt"
