#!/usr/bin/env bash
# One device call on the lent H200 (2026-12-01), each stage under its own time limit, everything it measured packed
# into $OUT: (1) the GPU tests (fast path = stock, captured step, after the family refactor), (2) batch_size=auto with
# and without the paper's 48 GB cap through train.py (provenance names the card), (3) the new families, stock
# against their best implementation at 4096 and 16384 tokens (benchmarks/bench_families.py).
#   bash scripts/gpu_session_2026-12-01.sh [tests] [cap] [families]        (default: all three)
# The device copy of the tree has no .git of its own: write `git rev-parse HEAD > .gpu_commit` here first and carry
# it (with .whl), so that provenance names the commit (STUDY_GIT_COMMIT).
set -uo pipefail
STAGES=("$@"); [ ${#STAGES[@]} -gt 0 ] || STAGES=(tests cap families)
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
T0=$(date +%s)
source scripts/gpu_env.sh > "$OUT/log.txt" 2>&1 || { cat "$OUT/log.txt"; exit 1; }
export STUDY_GIT_COMMIT=$(cat .gpu_commit 2>/dev/null)
DEFAULT_BUDGET=570 STAGE_RESERVE=20 STAGE_KILL_S=15
source scripts/gpu_stage.sh  # left, stage
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv > "$OUT/gpu.txt" 2>&1
S=/tmp/study
for st in "${STAGES[@]}"; do
  case $st in
    tests)
      stage 200 python3 -m pytest -m gpu -q -x -p no:cacheprovider tests/ ;;
    cap)
      # the largest batch whose full-length fp32 step fits: the whole card, then the paper's 48 GB A6000
      CAP=(model=led_base model.pretrained=false strategy=single_gpu impl=stock seq_len=4096 batch_size=auto
           trainer.max_steps=4 data.val_every_steps=4 data.synthetic.n_train=256 data.synthetic.n_validation=8
           data.max_target_len=128 callbacks.energy.measure_power_secs=5 paths.output_dir=$S)
      stage 150 python3 train.py -m name=cap "${CAP[@]}" batch_size_memory_gib=null,48 ;;
    families)
      stage 400 python3 benchmarks/bench_families.py --models longt5_base,qwen3_0_6b --lengths 4096,16384 \
          --steps 5 --warmup 2 --gen-reps 1 --min-time 4 --out "$OUT/families" ;;
  esac
done
# records and logs of the train.py runs (no checkpoints), and what the benchmark wrote
[ -d $S ] && tar czf "$OUT/runs.tar.gz" --exclude='*.ckpt' --exclude='model' -C $S . 2>/dev/null
[ -f "$OUT/families/results.jsonl" ] && cp "$OUT/families/results.jsonl" "$OUT/families_results.jsonl"
python3 - <<'EOF' 2>/dev/null | tee -a "$OUT/log.txt"
import json, pathlib
for p in sorted(pathlib.Path("/tmp/study").rglob("metrics.json")):
    r = json.loads(p.read_text())
    if r.get("kind") != "train":
        continue
    prov = r.get("provenance") or {}
    print(p.parent.name, r.get("status"), "batch", r.get("batch_size"), r.get("batch_size_source"),
          "cap", r.get("batch_size_memory_gib"), "peak GiB", (r.get("costs", {}).get("peak_memory_allocated_gib") or {}).get("value"),
          "steady samples/s", (r.get("costs", {}).get("steady_train_samples_per_s") or {}).get("value"),
          "gpu", prov.get("gpu_names"), "commit", prov.get("git_commit"))
EOF
tail -40 "$OUT/log.txt"
