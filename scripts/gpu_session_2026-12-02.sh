#!/usr/bin/env bash
# Device calls on the lent H200 (2026-12-02), each stage under its own time limit, everything packed into $OUT.
#   bash scripts/gpu_session_2026-12-02.sh probe     # where generation and training time goes (issue 18, first call):
#                                                    #   decode_probe.py (every decode attention vs the memory floor),
#                                                    #   one profiled training step per model at its largest batch
#   bash scripts/gpu_session_2026-12-02.sh bench     # the issue-18 benchmark at 4096 tokens (bench_fast.py): generation
#                                                    #   fixed-length and EOS-stopped, training at the paper's and the
#                                                    #   largest batch, stock fp32 vs the captured step; checks first
#   bash scripts/gpu_session_2026-12-02.sh long      # LED-base and LED-large training at 8192 and 16384 tokens
# Standalone: the benchmarks need torch, transformers and pyyaml only (no carried wheels).
set -uo pipefail
PHASE=${1:-probe}
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
T0=$(date +%s)
DEFAULT_BUDGET=560 STAGE_RESERVE=10 STAGE_KILL_S=10
source scripts/gpu_stage.sh  # left, stage, bench_env
bench_env
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
  bench|long)
    # one process per model; --budget-s stops a process from starting a cell late, timeout hard-stops it (its
    # finished cells are already in results.jsonl); the same-function checks first, on the code as benchmarked
    B="--out $OUT/bench --steps 4 --warmup 1 --gen-reps 1 --min-time 1.5"
    GEN=gen:fixed:stock32,gen:fixed:fastcg,gen:eos:stock32,gen:eos:fastcg
    TRAIN=train:paper:stock32,train:paper:fastcg,train:max:stock32,train:max:fastcg
    if [ "$PHASE" = bench ]; then
      stage 200 python3 benchmarks/bench_fast.py $B --budget-s 150 --models led_base --lengths 4096 --check \
          --check-len led=2048 --plan $GEN,$TRAIN
      stage 130 python3 benchmarks/bench_fast.py $B --budget-s 100 --models led_large --lengths 4096 --plan $GEN,$TRAIN
      stage 190 python3 benchmarks/bench_fast.py $B --budget-s 150 --models bigbird_large --lengths 4096 --check \
          --check-len bigbird_pegasus=1024 --plan $GEN,train:paper:stock32,train:paper:fastcg
    else
      stage 170 python3 benchmarks/bench_fast.py $B --budget-s 130 --models led_base --lengths 8192,16384 --plan $TRAIN
      stage 170 python3 benchmarks/bench_fast.py $B --budget-s 130 --models led_large --lengths 8192,16384 --plan $TRAIN
    fi
    python3 benchmarks/bench_fast.py --out "$OUT/bench" --plan "" --models "" >> "$OUT/log.txt" 2>&1  # tables of all
    grep -h -A60 '^targets' "$OUT/log.txt" | tail -62
    ;;
  *) echo "usage: $0 probe|bench|long"; exit 2 ;;
esac
