# Sourced by the device-call scripts once T0 (the call's start) and OUT are set (bench_env: the benchmark calls'
# environment and gpu.txt). Each script keeps its own margins:
#   DEFAULT_BUDGET  seconds the call may run (BUDGET= overrides it)
#   STAGE_RESERVE   seconds kept back after a stage for packing (RESERVE= overrides it for one stage)
#   STAGE_KILL_S    seconds between timeout's SIGINT and its SIGKILL
left() { echo $(( ${BUDGET:-$DEFAULT_BUDGET} - ($(date +%s) - T0) )); }
stage() {  # stage <max seconds> <command...>: runs it under min(max, time left - reserve), logged to $OUT/log.txt
  local max=$1; shift
  local t=$(( $(left) - ${RESERVE:-$STAGE_RESERVE} )); [ "$t" -gt "$max" ] && t=$max
  if [ "$t" -lt 20 ]; then echo "SKIPPED (no time left): $*" | tee -a "$OUT/log.txt"; return 0; fi
  echo "=== [$(( $(date +%s) - T0 ))s] stage (limit ${t}s): $*" | tee -a "$OUT/log.txt"
  timeout -s INT -k "$STAGE_KILL_S" "$t" "$@" >> "$OUT/log.txt" 2>&1
  local rc=$?
  echo "=== [$(( $(date +%s) - T0 ))s] exit $rc" | tee -a "$OUT/log.txt"
}
bench_env() {  # the benchmark calls' environment, and the card and versions they ran on in $OUT/gpu.txt
  export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
  export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache
  { nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv
    python3 -c "import torch, transformers, triton; print('torch', torch.__version__, 'transformers', transformers.__version__, 'triton', triton.__version__)"
  } > "$OUT/gpu.txt" 2>&1
}
