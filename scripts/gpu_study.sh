#!/usr/bin/env bash
# The GPU runs behind BENCHMARKS.md's measurement section and docs/gpu-study/, through the project's own commands.
# Run on the lent H100 from the repository root, with the wheels from scripts/gpu_wheels.sh, naming the stages:
#   LENGTHS=1024,4096 bash scripts/gpu_study.sh measure stock_summ fast_summ     (what docs/gpu-study ran)
#   NAME=gpu_graph STEPS=40 bash scripts/gpu_study.sh graph_summ   (model.compile=true with and without model.cuda_graph)
# Stages: trace (where train.py's wall time goes: benchmarks/step_trace.py with all, no energy, no measuring callbacks),
# overhead (bench_callbacks), measure (train.py energy/speed runs + bare loops, for BENCHMARKS.md), stock_summ, stock_qa,
# fast_summ, fast_qa (the grid in docs/gpu-study), graph_summ (compiled fast path at 4096 tokens, LED-base with and
# without the captured step, LED-large and BigBird with it), check (fast path = stock on this GPU, LED and BigBird). Train stages are followed by
# infer.py on every finished run (checkpoints do not outlive the machine). Each stage has its own time limit, so the
# call always ends by packing what finished into $OUT/study.tar.gz (records, configs, logs; no checkpoints).
set -uo pipefail
STAGES=("$@")
[ ${#STAGES[@]} -gt 0 ] || { echo "usage: gpu_study.sh STAGE..."; exit 2; }
PART=study
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT/extra"  # at most 8 files come back: traces and checks travel packed in extra.tar.gz
T0=$(date +%s)
source scripts/gpu_env.sh > "$OUT/log.txt" 2>&1 || { cat "$OUT/log.txt"; exit 1; }
S=/tmp/study
PY="python3"
DEFAULT_BUDGET=575 STAGE_RESERVE=25 STAGE_KILL_S=15
source scripts/gpu_stage.sh  # left, stage
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv > "$OUT/gpu.txt" 2>&1

# the grid: random-init real-size models on the embedded data, a fixed budget of optimizer steps per job
GRID=(paths.output_dir=$S model.pretrained=false strategy=single_gpu batch_size=paper
      trainer.max_steps=${STEPS:-5} data.val_every_steps=${STEPS:-5} data.synthetic.n_train=96 data.synthetic.n_validation=16
      '~callbacks.last_checkpoint' callbacks.energy.measure_power_secs=5)
FAST=(impl=fast)
MODELS=led_base,led_large,bigbird_large
NAME=${NAME:-gpu_study}
LENGTHS=${LENGTHS:-1024,2048,3072,4096}
MEASURE=(model=led_base model.pretrained=false strategy=single_gpu batch_size=paper data.synthetic.n_train=256 paths.output_dir=$S)
trained=0
for st in "${STAGES[@]}"; do
  case $st in
    trace)
      TRACE=(name=gpu_trace seq_len=1024 data=synthetic trainer.max_steps=24 data.val_every_steps=12 data.synthetic.n_validation=16
             "${MEASURE[@]}" '~callbacks.last_checkpoint' '~callbacks.best_checkpoint' '+callbacks.trace._target_=benchmarks.step_trace.StepTrace')
      stage 60 $PY train.py "${TRACE[@]}" +callbacks.trace.path=$OUT/extra/trace_all.json
      stage 60 $PY train.py "${TRACE[@]}" +callbacks.trace.path=$OUT/extra/trace_no_energy.json '~callbacks.energy'
      stage 60 $PY train.py "${TRACE[@]}" +callbacks.trace.path=$OUT/extra/trace_no_measuring.json '~callbacks.energy' '~callbacks.utilization' '~callbacks.speed'
      $PY benchmarks/step_trace.py $OUT/extra/trace_*.json > $OUT/trace_summary.txt 2>&1 ;;
    overhead)
      # what measuring and what Lightning cost per step, against a bare loop, in one process (BENCHMARKS.md)
      stage 150 sh -c "$PY benchmarks/bench_callbacks.py ${MEASURE[*]} seq_len=1024 steps=${OSTEPS:-60} >> $OUT/bench_callbacks.txt" ;;
    measure)
      # energy and speed as train.py records them (the best checkpoint is written after each validation, as in a
      # real run; its time is recorded apart), and the bare loop on the same model and batch
      stage 400 $PY train.py -m name=gpu_measure seq_len=1024,4096 data=synthetic trainer.max_steps=${MSTEPS:-200} \
          data.val_every_steps=$(( ${MSTEPS:-200} / 2 )) data.synthetic.n_validation=16 "${MEASURE[@]}" '~callbacks.last_checkpoint'
      for L in 1024 4096; do
        stage 80 sh -c "$PY benchmarks/bare_loop.py ${MEASURE[*]} seq_len=$L steps=${BSTEPS:-60} >> $OUT/bare_loop.jsonl"
      done ;;
    stock_summ) trained=1; stage 420 $PY train.py -m name=$NAME data=synthetic model=$MODELS seq_len=$LENGTHS "${GRID[@]}" ;;
    stock_qa)   trained=1; stage 300 $PY train.py -m name=$NAME data=synthetic_qa model=$MODELS seq_len=${QA_LENGTHS:-1024,4096} "${GRID[@]}" ;;
    fast_summ)  trained=1; stage 420 $PY train.py -m name=$NAME data=synthetic model=$MODELS seq_len=$LENGTHS "${GRID[@]}" "${FAST[@]}" ;;
    fast_qa)    trained=1; stage 300 $PY train.py -m name=$NAME data=synthetic_qa model=$MODELS seq_len=${QA_LENGTHS:-1024,4096} "${GRID[@]}" "${FAST[@]}" ;;
    graph_summ) trained=1
                stage 200 $PY train.py -m name=$NAME data=synthetic model=led_base seq_len=4096 "${GRID[@]}" "${FAST[@]}" model.compile=true model.cuda_graph=false,true
                stage 200 $PY train.py -m name=$NAME data=synthetic model=led_large,bigbird_large seq_len=4096 "${GRID[@]}" "${FAST[@]}" model.compile=true model.cuda_graph=true ;;
    check)      stage 150 $PY benchmarks/bench_fast.py --out "$OUT/extra/check" --check-only --models led_base,bigbird_large --check-len led=2048,bigbird_pegasus=1024 ;;
    *) echo "unknown stage $st"; exit 2 ;;
  esac
done
# inference on every finished run (validation split, batch 16, each run's own strategy and precision)
[ $trained = 1 ] && RESERVE=20 stage 200 $PY infer.py run_dir=$S/sweeps/$NAME paths.output_dir=$S
tar czf "$OUT/$PART.tar.gz" -C "$S" --exclude='*.ckpt' --exclude='*/model/*' sweeps 2>/dev/null
tar czf "$OUT/extra.tar.gz" -C "$OUT" extra && rm -rf "$OUT/extra"
echo "=== [$(( $(date +%s) - T0 ))s] packed $(du -h "$OUT/$PART.tar.gz" | cut -f1)" | tee -a "$OUT/log.txt"
tail -n 80 "$OUT/log.txt" | grep -E "===|INFO\] - (led|big)|error|Error" | tail -n 60
