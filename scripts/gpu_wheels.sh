#!/usr/bin/env bash
# Download, here, the wheels the lent GPU machine lacks (it has torch, transformers, lightning, torchmetrics,
# pandas, psutil, nvidia-ml-py ... but not hydra, omegaconf, codecarbon, rouge-score). They travel in .whl/
# (git-ignored, carried by the device call) and scripts/gpu_env.sh installs them there.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
pip_dl() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_34_x86_64 -d .whl "$@"
}
# omegaconf pins antlr4 4.9.* and rouge-score 0.1.2 is published only as source: build their pure-Python wheels
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3 rouge-score==0.1.2
pip_dl hydra-core==1.3.8 omegaconf==2.3.1 \
  codecarbon==3.3.2 rapidfuzz==3.14.6 arrow==1.4.0 types-python-dateutil pycountry==26.2.16 pydantic==2.14.3 \
  pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 questionary==2.1.1 prompt-toolkit==3.0.53 \
  wcwidth==0.9.4 authlib==1.9.9 joserfc==1.8.0 cryptography==50.0.2 cffi==2.1.1 pycparser==3.12 \
  nltk==3.10.4 defusedxml==0.7.1 pytest==8.4.2 pluggy==1.7.0 iniconfig==2.3.1  # pytest: the -m gpu tests
ls .whl
