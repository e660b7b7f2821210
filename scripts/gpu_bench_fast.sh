#!/usr/bin/env bash
# The exact recipe the lent-GPU call runs (from the repository root):
#   bash scripts/gpu_bench_fast.sh smoke   # GPU same-function checks + a short probe (about 4 minutes)
#   bash scripts/gpu_bench_fast.sh full    # the benchmark (under 7 minutes), one process per model
#   bash scripts/gpu_bench_fast.sh check   # only the same-function checks, LED and BigBird (about 2 minutes)
#   bash scripts/gpu_bench_fast.sh graph   # model.cuda_graph: GPU tests, its checks, paper-batch cells (about 8 minutes;
#                                          # pytest from the carried wheels: source scripts/gpu_env.sh first)
# full takes LED_PLAN / BB_PLAN (cells in order), LENGTHS, T_LED_BASE / T_LED_LARGE / T_BIGBIRD (seconds per
# model's process), MODELS (a subset) and CHECK=0 (skip the same-function checks).
# Results go to $OUT (the device tool's folder) or benchmarks/results/local; at most 8 files come back from
# the device, so every process appends to the same results.jsonl and the tables are rebuilt from it.
set -uo pipefail
PHASE=${1:-full}
OUT=${OUT:-benchmarks/results/local}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
export TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache  # shared by the per-model processes of one call
PY=${PY:-python3}
LOG="$OUT/run.log"
{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit,temperature.gpu --format=csv
  $PY -c "import torch, transformers, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'triton', triton.__version__)"
} 2>&1 | tee "$OUT/gpu.txt"

bench() { $PY benchmarks/bench_fast.py --out "$OUT/bench" "$@" 2>&1 | tee -a "$LOG"; }
# model_bench NAME LIMIT MARGIN PLAN [FLAGS...]: one model's cells in a process of its own, unless MODELS leaves it
# out; `timeout` hard-stops one that overruns (its finished cells are already in results.jsonl) and --budget-s
# stops it from starting a cell late
model_bench() {
  local name=$1 limit=$2 margin=$3 plan=$4; shift 4
  [[ ",${MODELS:-led_base,led_large,bigbird_large}," == *",$name,"* ]] || return 0
  timeout -s INT -k 10 "$limit" $PY benchmarks/bench_fast.py --out "$OUT/bench" --models "$name" \
    --lengths "${LENGTHS:-4096}" --plan "$plan" --steps 4 --warmup 1 --gen-reps 1 --min-time 1.5 \
    --budget-s $((limit - margin)) "$@" 2>&1 | tee -a "$LOG"
}

case "$PHASE" in
  smoke)
    # the two ceilings (METHOD.md): a large bf16 matmul and a device-to-device copy
    $PY - <<'PY' 2>&1 | tee -a "$OUT/gpu.txt"
import torch, time
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
x = torch.empty(2**30, dtype=torch.uint8, device="cuda"); y = torch.empty_like(x)
for name, fn, work in (("bf16 matmul TFLOP/s", lambda: a @ b, 2 * 8192**3), ("copy GB/s (read+write)", lambda: y.copy_(x), 2 * 2**30)):
    fn(); torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(20): fn()
    torch.cuda.synchronize(); print(name, round(20 * work / (time.perf_counter() - t) / 1e12 * (1 if "TFLOP" in name else 1000), 1))
PY
    # (run on 2026-11-23 at an earlier revision: see benchmarks/NOTES_fast_path.md)
    bench --check --models led_base,bigbird_large --lengths 4096 --steps 3 --warmup 1 --gen-reps 1 --budget-s 175 \
          --plan train:paper:stock32,train:paper:fast,gen:fixed:stock32,gen:fixed:fast
    ;;
  full)
    # One process per model (model_bench). Cells run in plan order: the target cells first (stock fp32 vs fast
    # at paper and max batch, generation), then the compiled variant (whose compile takes tens of seconds per
    # shape), a profile, and bf16 stock last (FIELD_NOTES has it already).
    LED_PLAN=${LED_PLAN:-train:paper:stock32,train:paper:fast,gen:fixed:stock32,gen:fixed:fast,train:max:stock32,train:max:fast,train:paper:fastc,profile:paper:fast,train:max:fastc,train:paper:stock16,gen:fixed:stock16,gen:fixed:fastc}
    BB_PLAN=${BB_PLAN:-train:paper:stock32,train:paper:fast,gen:fixed:stock32,gen:fixed:fast,train:max:stock32,train:max:fast,profile:paper:fast,train:paper:stock16,train:paper:fastc}
    # same-function checks on this GPU for the code as benchmarked (LED-large runs LED-base's code);
    # CHECK=0: the checks already ran on this code (the check phase)
    check() { [ "${CHECK:-1}" = 0 ] || echo --check --check-len "$1"; }
    model_bench led_base "${T_LED_BASE:-150}" 40 "$LED_PLAN" $(check led=2048)
    model_bench led_large "${T_LED_LARGE:-135}" 40 "$LED_PLAN"
    model_bench bigbird_large "${T_BIGBIRD:-110}" 15 "$BB_PLAN" $(check bigbird_pegasus=1024)
    ;;
  graph)
    # model.cuda_graph=true: its GPU tests, its same-function checks on the real architectures, then stock fp32,
    # compiled layers and the captured step side by side at the paper's batch (GRAPH_PLAN, LENGTHS)
    $PY -m pytest -q -m gpu -p no:cacheprovider tests/lightning_modules/test_step_graph.py 2>&1 | tee -a "$LOG"
    plan=${GRAPH_PLAN:-train:paper:stock32,train:paper:fastc,train:paper:fastcg,train:paper:fasteg}
    check() { [ "${CHECK:-1}" = 0 ] || echo --check-step-graph --check-len "$1"; }
    model_bench led_base "${T_LED_BASE:-160}" 40 "$plan" $(check led=2048)
    model_bench led_large "${T_LED_LARGE:-110}" 30 "$plan"
    model_bench bigbird_large "${T_BIGBIRD:-170}" 40 "$plan" $(check bigbird_pegasus=1024)
    ;;
  check)
    bench --check-only --models led_base,bigbird_large --check-len led=2048,bigbird_pegasus=1024
    ;;
  *) echo "usage: $0 smoke|full|check|graph"; exit 2 ;;
esac
