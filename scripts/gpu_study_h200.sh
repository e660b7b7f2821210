#!/usr/bin/env bash
# Device calls of the H200 study (issue 19, docs/gpu-study-h200/), each a phase under one time budget, everything
# packed into $OUT. Run from the repository root with the carried wheels (scripts/gpu_wheels.sh), .gpu_commit and, for
# the grid, .gpu_probe_cache.json (an earlier call's $OUT/batch_size_auto.json, when there is one).
#   bash scripts/gpu_study_h200.sh recipe   # which recipe makes the real-size models learn the embedded task from
#                                           # scratch: trials run side by side on the one GPU (their costs are not
#                                           # measurements: they share the card), validation Rgm every 100 steps
#   bash scripts/gpu_study_h200.sh pretrain # the paper fine-tunes pretrained models: pretrain each real-size model here
#                                           # on short documents (512 words, seq_len 512), then fine-tune the best at
#                                           # 1024 and 4096 tokens on the 4096-word documents (model.local_path=<run>)
#   bash scripts/gpu_study_h200.sh grid      # the study's grid, resumed call after call (MEM=null IMPL=stock: other blocks)
#   TRIALS="led_large:1e-4:0.0 led_large:5e-5:0.0 led_large:3e-5:0.0 bigbird_large:1e-4:0.0 bigbird_large:5e-5:0.0" \
#     PSTEPS=600 PVAL=200 FT_MODELS="led_large bigbird_large" FT_LENGTHS="1024 4096" FSTEPS=200 \
#     bash scripts/gpu_study_h200.sh pretrain   # the third call: the large models without dropout
set -uo pipefail
PHASE=${1:-recipe}
OUT=${OUT:-/tmp/gpu_out}
S=${STUDY_DIR:-/tmp/study}  # the runs; a warm machine keeps them between calls
mkdir -p "$OUT" "$S"
T0=$(date +%s)
source scripts/gpu_env.sh > "$OUT/log.txt" 2>&1 || { cat "$OUT/log.txt"; exit 1; }
export TRANSFORMERS_VERBOSITY=error TORCHINDUCTOR_CACHE_DIR=/tmp/inductor_cache
[ -f .gpu_commit ] && export STUDY_GIT_COMMIT=$(cat .gpu_commit)
DEFAULT_BUDGET=560 STAGE_RESERVE=25 STAGE_KILL_S=15
source scripts/gpu_stage.sh  # left, stage
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv > "$OUT/gpu.txt" 2>&1

# real-size architectures, random init, the embedded summarization task at 4096 words with 8 facts
REAL=(strategy=single_gpu data=synthetic impl=fast_graph paths.output_dir=$S
      data.synthetic.n_validation=32 '~callbacks.last_checkpoint' '~callbacks.early_stopping')

trial() {  # trial <label> <seconds> <overrides...>: one train.py run in the background, its log beside it
  local label=$1 t=$2; shift 2
  mkdir -p "$S/$PHASE/$label"
  echo "=== [$(( $(date +%s) - T0 ))s] $label (limit ${t}s): $*" | tee -a "$OUT/log.txt"
  timeout -s INT -k 15 "$t" python3 train.py name=$PHASE "${REAL[@]}" "$@" hydra.run.dir=$S/$PHASE/$label \
      > "$S/$PHASE/$label/stdout.txt" 2>&1 &
}

case $PHASE in
  recipe)
    T=$(( $(left) - 45 ))
    # LED-base at four learning rates / curricula (min_doc_fraction: training documents of that fraction of 4096
    # words up to all of it), LED-large and BigBird-large at the likeliest one
    C=(model.pretrained=false seq_len=4096 batch_size=8 module.warmup_ratio=0.1 data.val_every_steps=100 '~callbacks.best_checkpoint')
    trial led_base_lr3e-4_mdf0.25   $T model=led_base "${C[@]}" trainer.max_steps=600 module.lr=3e-4 data.synthetic.min_doc_fraction=0.25
    trial led_base_lr3e-4_mdf0.0625 $T model=led_base "${C[@]}" trainer.max_steps=600 module.lr=3e-4 data.synthetic.min_doc_fraction=0.0625
    trial led_base_lr1e-3_mdf0.0625 $T model=led_base "${C[@]}" trainer.max_steps=600 module.lr=1e-3 data.synthetic.min_doc_fraction=0.0625
    trial led_base_lr1e-4_mdf0.0625 $T model=led_base "${C[@]}" trainer.max_steps=600 module.lr=1e-4 data.synthetic.min_doc_fraction=0.0625
    trial led_large_lr1e-4_mdf0.0625 $T model=led_large "${C[@]}" trainer.max_steps=500 module.lr=1e-4 data.synthetic.min_doc_fraction=0.0625
    trial bigbird_large_lr3e-4_mdf0.0625 $T model=bigbird_large "${C[@]}" trainer.max_steps=400 module.lr=3e-4 data.synthetic.min_doc_fraction=0.0625
    wait
    ;;
  pretrain)
    # 1. pretraining from scratch on 512-word documents (all 8 facts inside 512 tokens), best checkpoint kept;
    #    TRIALS: model:lr:dropout ... (the first call's set by default; call 3: LED-large and BigBird-large)
    P=(model.pretrained=false seq_len=512 batch_size=16 module.warmup_ratio=0.1 data.val_every_steps=${PVAL:-250}
       data.synthetic.doc_tokens=512 data.synthetic.n_train=8000 trainer.max_steps=${PSTEPS:-1000})
    for t in ${TRIALS:-led_base:3e-4:0.1 led_base:3e-4:0.0 led_base:1e-4:0.1 led_large:1e-4:0.1 bigbird_large:1e-4:0.1}; do
      IFS=: read -r m lr drop <<< "$t"
      label=p_${m}_lr${lr}; [ "$drop" = 0.0 ] && label=${label}_nodrop
      trial $label ${PT:-230} model=$m "${P[@]}" module.lr=$lr model.arch.dropout=$drop
    done
    wait
    python3 scripts/learning_curves.py "$S/$PHASE" 2>&1 | tee -a "$OUT/log.txt"
    # 2. fine-tuning each model's best pretrained run on the 4096-word documents at FT_LENGTHS tokens
    best() {  # the run of a model with the highest best validation Rgm (metrics.json), if it kept a checkpoint
      python3 -c "import json,glob,sys; r=[(json.load(open(f)).get('rgm') or 0, f.rsplit('/',1)[0]) for f in glob.glob('$S/$PHASE/p_$1_*/metrics.json')]
r=[x for x in r if glob.glob(x[1]+'/checkpoints/best.ckpt')]; print(max(r)[1] if r else '')"; }
    F=(batch_size=8 module.lr=${FLR:-1e-4} module.warmup_ratio=0.1 data.val_every_steps=100 trainer.max_steps=${FSTEPS:-300} model.pretrained=true)
    T=$(( $(left) - 40 ))
    for m in ${FT_MODELS:-led_base led_large bigbird_large}; do
      src=$(best $m); [ -n "$src" ] || { echo "no pretrained $m" | tee -a "$OUT/log.txt"; continue; }
      for L in ${FT_LENGTHS:-4096}; do trial f_${m}_$L $T model=$m "${F[@]}" seq_len=$L model.local_path=$src; done
      [ $m = led_base ] && [ -z "${FT_LENGTHS:-}" ] && trial f_${m}_1024 $T model=$m "${F[@]}" seq_len=1024 model.local_path=$src
    done
    wait
    ;;
  slice)
    # the study's first slice through the project's commands: LED-base pretrained with the recipe the pretrain calls
    # found (512-word documents, lr 1e-4, dropout 0.1), then fine-tuned at the paper's four lengths on the
    # 4096-word documents, two seeds, one job at a time (costs are measured: nothing else shares the card)
    P=(model.pretrained=false seq_len=512 batch_size=16 module.warmup_ratio=0.1 data.val_every_steps=100
       data.synthetic.doc_tokens=512 data.synthetic.n_train=8000 trainer.max_steps=${PSTEPS:-300})
    trial p_led_base ${PT:-90} model=led_base "${P[@]}" module.lr=1e-4 model.arch.dropout=0.1
    wait
    T=$(( $(left) - 25 ))
    echo "=== [$(( $(date +%s) - T0 ))s] grid (limit ${T}s)" | tee -a "$OUT/log.txt"
    timeout -s INT -k 15 $T python3 train.py -m name=h200_slice "${REAL[@]}" model=led_base model.pretrained=true \
        model.local_path=$S/$PHASE/p_led_base seed=1,2 seq_len=1024,2048,3072,4096 batch_size=8 module.lr=1e-4 \
        trainer.max_steps=${FSTEPS:-100} data.val_every_steps=50 >> "$OUT/log.txt" 2>&1
    echo "=== [$(( $(date +%s) - T0 ))s] grid exit $?" | tee -a "$OUT/log.txt"
    mkdir -p "$S/$PHASE" && mv "$S/sweeps" "$S/$PHASE/" 2>/dev/null
    ;;
  grid)
    # The study through the project's commands, as a queue that later calls resume: for each seed, for each model,
    # experiment=pretrain_synthetic (skipped once finished) then experiment=finetune_synthetic over LENGTHS (finished
    # jobs skipped), one job at a time (costs measured), then infer.py on every finished job unless INFER=0 (one
    # already evaluated is skipped). Models before seeds: a call cut off by its time leaves every model at seed 1.
    # A warm machine keeps /tmp/study between calls (checkpoints do not outlive it: a fresh one pretrains again).
    # A pretraining cut off by its limit (PT) is unfinished: its fine-tunes are refused in one line, not run from it.
    # MODELS, SEEDS (or CELLS, below), TASK (synthetic | synthetic_qa), IMPL (fast_graph | stock), BATCH (auto | 8), MEM (48 | null:
    # batch_size=auto's cap), FSTEPS, EXTRA (more overrides for both steps); the defaults are block 1 of docs/gpu-study-h200/README.md (fast path,
    # batch_size=auto under 48 GiB, 100 steps); the lengths' two ends first, so a call cut off by its limit still
    # leaves the longer-input step (calls 5-7 lost 2048 three times, and 4096 with it in two)
    G=(paths.output_dir=$S impl=${IMPL:-fast_graph} '~callbacks.last_checkpoint')
    X=(${EXTRA:-})  # overrides for both steps, e.g. EXTRA=module.global_attention=question for LED on the QA task
    # batch_size=auto's answers from earlier calls (PROBE_CACHE_IN, default .gpu_probe_cache.json: carried, what an
    # earlier call returned as $OUT/batch_size_auto.json): a fresh machine has none, and a probe is ~85 s of
    # compiles; they are keyed by the model code's contents, so a commit that did not touch it keeps them
    PC=$SCROLLS_STUDY_CACHE/batch_size_auto.json PCIN=${PROBE_CACHE_IN:-.gpu_probe_cache.json}
    if [ -f "$PCIN" ] && [ ! -f "$PC" ]; then mkdir -p "$SCROLLS_STUDY_CACHE" && cp "$PCIN" "$PC" \
        && echo "probe answers from $PCIN" | tee -a "$OUT/log.txt"; fi
    # GPU_TESTS: pytest arguments run first (-m gpu), e.g. the batch-size contract a grid's batches rest on
    [ -n "${GPU_TESTS:-}" ] && stage 180 python3 -m pytest -m gpu -q -p no:cacheprovider $GPU_TESTS
    # CELLS ("seed:model:lengths ...", e.g. "1:led_base:3072 1:led_large:4096,2048"), when set, is the queue itself:
    # a fresh machine has no finished jobs to skip, so a later session names the cells still missing
    if [ -z "${CELLS:-}" ]; then
      for seed in ${SEEDS:-1 2}; do for M in ${MODELS:-led_base led_large}; do CELLS="${CELLS:-} $seed:$M:${LENGTHS:-1024,4096,2048,3072}"; done; done
    fi
    for cell in $CELLS; do
      IFS=: read -r seed M L <<< "$cell"
      T=$(( $(left) - ${INFER_S:-0} - 50 )); [ $T -lt 60 ] && break
      [ $T -gt ${PT:-240} ] && PT_M=${PT:-240} || PT_M=$T
      echo "=== [$(( $(date +%s) - T0 ))s] pretrain $M (limit ${PT_M}s)" | tee -a "$OUT/log.txt"
      timeout -s INT -k 40 $PT_M python3 train.py -m experiment=pretrain_synthetic model=$M data=${TASK:-synthetic} \
          impl=fast_graph paths.output_dir=$S '~callbacks.last_checkpoint' "${X[@]}" >> "$OUT/log.txt" 2>&1
      T=$(( $(left) - ${INFER_S:-0} - 50 )); [ $T -lt 60 ] && break  # 40 s for a signalled job to end (call 6: >15)
      echo "=== [$(( $(date +%s) - T0 ))s] fine-tune $M seed $seed (limit ${T}s)" | tee -a "$OUT/log.txt"
      timeout -s INT -k 40 $T python3 train.py -m experiment=finetune_synthetic "${G[@]}" model=$M data=${TASK:-synthetic} \
          seq_len=$L seed=$seed batch_size=${BATCH:-auto} batch_size_memory_gib=${MEM:-48} \
          trainer.max_steps=${FSTEPS:-100} "${X[@]}" >> "$OUT/log.txt" 2>&1
    done
    if [ "${INFER:-1}" = 1 ]; then
      T=$(( $(left) - 15 ))
      echo "=== [$(( $(date +%s) - T0 ))s] infer (limit ${T}s)" | tee -a "$OUT/log.txt"
      [ $T -gt 30 ] && timeout -s INT -k 10 $T python3 infer.py run_dir=$S/sweeps/finetune_synthetic paths.output_dir=$S \
          >> "$OUT/log.txt" 2>&1
    fi
    [ -f "$PC" ] && cp "$PC" "$OUT/batch_size_auto.json"  # for the next call to carry
    PACK=sweeps  # left in place: the next call resumes from it
    ;;
  *) echo "usage: $0 recipe|pretrain|slice|grid"; exit 2 ;;
esac
echo "=== [$(( $(date +%s) - T0 ))s] done" | tee -a "$OUT/log.txt"
PACK=${PACK:-$PHASE}
python3 scripts/learning_curves.py "$S/$PACK" --out "$OUT/learning_curves.csv" 2>&1 | tee -a "$OUT/log.txt"
tar czf "$OUT/$PHASE.tar.gz" -C "$S" --exclude='*.ckpt' --exclude='*/model/*' "$PACK" 2>/dev/null
nvidia-smi --query-gpu=memory.used --format=csv >> "$OUT/gpu.txt" 2>&1
grep -h "Error\|error" "$S/$PACK"/*/stdout.txt 2>/dev/null | sort | uniq -c | head -20
exit 0  # what ran is in $OUT/log.txt; each job's own outcome is in its record
