#!/usr/bin/env bash
# Device calls on the lent H200 (2026-12-02), each stage under its own time limit, everything packed into $OUT.
#   bash scripts/gpu_session_2026-12-02.sh probe     # where generation and training time goes (issue 18, first call):
#                                                    #   decode_probe.py (every decode attention vs the memory floor),
#                                                    #   one profiled training step per model at its largest batch
#   bash scripts/gpu_session_2026-12-02.sh bench     # the issue-18 benchmark (bench_fast.py) + same-function checks
# Standalone: the benchmarks need torch, transformers and pyyaml only (no carried wheels).
set -uo pipefail
PHASE=${1:-probe}
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
T0=$(date +%s)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache
left() { echo $(( ${BUDGET:-560} - ($(date +%s) - T0) )); }
stage() {  # stage <max seconds> <command...>
  local max=$1; shift
  local t=$(( $(left) - 10 )); [ "$t" -gt "$max" ] && t=$max
  if [ "$t" -lt 20 ]; then echo "SKIPPED (no time left): $*" | tee -a "$OUT/log.txt"; return 0; fi
  echo "=== [$(( $(date +%s) - T0 ))s] stage (limit ${t}s): $*" | tee -a "$OUT/log.txt"
  timeout -s INT -k 10 "$t" "$@" >> "$OUT/log.txt" 2>&1
  echo "=== [$(( $(date +%s) - T0 ))s] exit $?" | tee -a "$OUT/log.txt"
}
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv
  python3 -c "import torch, transformers, triton; print('torch', torch.__version__, 'transformers', transformers.__version__, 'triton', triton.__version__)"
} > "$OUT/gpu.txt" 2>&1
case $PHASE in
  probe)
    stage 330 python3 benchmarks/decode_probe.py --compiled "${COMPILED:-flex,bmm}" --out "$OUT/decode_probe.jsonl"
    for mb in ${PROFILES:-led_base:119 led_large:43 bigbird_large:2}; do
      stage 75 python3 benchmarks/bench_fast.py --models "${mb%%:*}" --lengths 4096 --plan "profile:${mb##*:}:fastc" \
          --out "$OUT/bench"
    done
    grep -h '^|' "$OUT/log.txt" | tail -40
    grep -h '^\[profile\]' "$OUT/log.txt" | cut -c1-1500
    ;;
  *) echo "usage: $0 probe|bench"; exit 2 ;;
esac
