#!/usr/bin/env bash
# Issue 18's training levers on the lent H200, each measured on and off beside stock fp32 in one process
# (benchmarks/bench_fast.py, impl suffixes: -fl the stock head and loss, +copy q/k/v copied to contiguous buffers,
# +bf16 the residual stream in bf16; benchmarks/NOTES_fast_path.md v6). Everything goes to $OUT.
#   bash scripts/gpu_levers.sh cells      # the same-function checks of the captured step (fused loss included), then
#                                         # LED-base, BigBird-large and LED-large cells at 4096 tokens
#   bash scripts/gpu_levers.sh accuracy   # whether the bf16 residual stream learns as the fp32 one: LED-base
#                                         # pretraining (experiment=pretrain_synthetic), 2 seeds each, side by side on
#                                         # the card (learning curves, not costs), with the new defaults' same-function
#                                         # checks beside them; then profiles alone. Needs the carried wheels
#                                         # (scripts/gpu_wheels.sh)
#   BUDGET=500 bash scripts/gpu_levers.sh targets  # flex with 64-token sparse blocks; the largest-batch targets
#   BUDGET=250 bash scripts/gpu_levers.sh gen      # BigBird generation with forward-only 64-token sparse blocks
set -uo pipefail
PHASE=${1:-cells}
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
T0=$(date +%s)
DEFAULT_BUDGET=560 STAGE_RESERVE=15 STAGE_KILL_S=10
source scripts/gpu_stage.sh  # left, stage, bench_env
bench_env
B="--out $OUT/bench --steps 4 --warmup 1 --min-time 1.5 --lengths 4096"
# the batch each lever is compared at: the captured step's largest batch in the 2026-12-02 run (94, 28); the
# paper's batch for BigBird (its target is there)
LB=${LB:-94} LL=${LL:-28}
V="fastcg+copy-fl,fastcg+copy,fastcg,fastcg+bf16+copy,fastcg+bf16"  # defaults (v6): -copy +fl
cells() { local b=$1; echo "$V" | tr , '\n' | sed "s/^/train:$b:/" | paste -sd, -; }
case $PHASE in
  cells)
    stage 200 python3 benchmarks/bench_fast.py $B --budget-s 170 --models led_base --check-step-graph --check-len led=2048 \
        --plan train:21:stock32,$(cells $LB)
    stage 200 python3 benchmarks/bench_fast.py $B --budget-s 170 --models bigbird_large --check-step-graph \
        --check-len bigbird_pegasus=1024 --plan train:paper:stock32,$(cells paper)
    stage 150 python3 benchmarks/bench_fast.py $B --budget-s 125 --models led_large --plan train:7:stock32,$(cells $LL)
    ;;
  accuracy)
    # the new defaults' same-function checks (q/k/v as strided views, the fused loss) while LED-base pretrains,
    # fp32 vs bf16 residual x SEEDS side by side (learning curves, not costs); then profiles, alone on the card
    source scripts/gpu_env.sh >> "$OUT/log.txt" 2>&1 || { cat "$OUT/log.txt"; exit 1; }
    [ -f .gpu_commit ] && export STUDY_GIT_COMMIT=$(cat .gpu_commit)
    S=/tmp/levers
    T=${PT:-300}
    echo "=== [$(( $(date +%s) - T0 ))s] pretraining, fp32 vs bf16 residual x seeds ${SEEDS:-1 2} (limit ${T}s)" | tee -a "$OUT/log.txt"
    for res in float32 bfloat16; do
      for seed in ${SEEDS:-1 2}; do
        d=$S/pretrain_${res}_s$seed; mkdir -p $d
        timeout -s INT -k 15 $T python3 train.py experiment=pretrain_synthetic model=led_base impl=fast_graph \
            model.residual_dtype=$res seed=$seed data.val_every_steps=50 paths.output_dir=$S hydra.run.dir=$d \
            '~callbacks.last_checkpoint' > $d/stdout.txt 2>&1 &
      done
    done
    stage 150 python3 benchmarks/bench_fast.py --out "$OUT/check" --models led_base,bigbird_large --check-only \
        --check-len led=2048,bigbird_pegasus=1024
    stage 100 python3 benchmarks/bench_fast.py --out "$OUT/check" --models led_base,bigbird_large --check-step-graph \
        --check-len led=2048,bigbird_pegasus=1024 --plan ""
    wait
    echo "=== [$(( $(date +%s) - T0 ))s] pretraining done" | tee -a "$OUT/log.txt"
    python3 scripts/learning_curves.py $S --out "$OUT/learning_curves.csv" 2>&1 | tee -a "$OUT/log.txt"
    tar czf "$OUT/accuracy.tar.gz" -C $S --exclude='*.ckpt' --exclude='*/model/*' . 2>/dev/null
    grep -h "Error" $S/*/stdout.txt | sort | uniq -c | head
    # where a step's device time goes now (fastc: the layers compiled, no captured step, whose replay hides names)
    for p in ${PROFILES:-led_base:$LB:fastc led_base:$LB:fastc+bf16}; do
      IFS=: read -r m b impl <<< "$p"
      stage 80 python3 benchmarks/bench_fast.py --out "$OUT/bench" --models $m --lengths 4096 --plan "profile:$b:$impl"
    done
    ;;
  targets)
    # 64-token sparse blocks for flex (fwd + bwd alone), then issue 18's largest-batch targets with the v6 defaults
    # (and +bf16) beside stock fp32, each largest batch found as bench_fast does (from the paper-batch peak)
    stage 130 python3 benchmarks/flex_probe.py --sparse64 --out "$OUT/flex_sparse64.jsonl"
    T="train:paper:stock32,train:max:stock32,train:paper:fastcg,train:max:fastcg,train:paper:fastcg+bf16,train:max:fastcg+bf16"
    stage 170 python3 benchmarks/bench_fast.py $B --budget-s 140 --models led_base --plan $T
    stage 150 python3 benchmarks/bench_fast.py $B --budget-s 120 --models led_large --plan $T
    ;;
  gen)
    # BigBird's forward-only 64-token sparse blocks (attention.INFER_TILE) in generation's encoder: the same-function
    # checks first (eval logits and greedy tokens run the forward-only masks), then generation with and without
    stage 230 python3 benchmarks/bench_fast.py --out "$OUT/bench" --steps 4 --warmup 1 --gen-reps 1 --min-time 1.5 \
        --lengths 4096 --budget-s 200 --models bigbird_large --check --check-len bigbird_pegasus=1024 \
        --plan gen:fixed:stock32,gen:fixed:fastcg-t64,gen:fixed:fastcg
    ;;
  *) echo "usage: $0 cells|accuracy|targets|gen"; exit 2 ;;
esac
python3 benchmarks/bench_fast.py --out "$OUT/bench" --plan "" --models "" >> "$OUT/log.txt" 2>&1  # tables of all
grep -h '^| \|^\[check\].*\(PASS\|FAIL\)\|^\[profile\]' "$OUT/log.txt" | cut -c1-400 | tail -60
