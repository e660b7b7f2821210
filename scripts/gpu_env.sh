# Sourced at the start of every device call: installs the carried wheels (scripts/gpu_wheels.sh) beside the
# machine's own torch/transformers/lightning, and points caches at the repository.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export SCROLLS_STUDY_CACHE=${SCROLLS_STUDY_CACHE:-/tmp/study_cache} MPLCONFIGDIR=/tmp/mpl
python3 -c "import torch, transformers, pytorch_lightning, hydra, codecarbon; print('env:', torch.__version__, transformers.__version__, pytorch_lightning.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no gpu')"
