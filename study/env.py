"""Process settings every entry point wants before torch, transformers or Lightning are imported."""

import logging
import os
import warnings

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # we tokenize before DataLoader workers fork
os.environ.setdefault("MPLCONFIGDIR", os.path.join(os.environ.get("SCROLLS_STUDY_CACHE", ".cache"), "matplotlib"))

# Lightning advice that does not apply to this study (we choose workers and logging on purpose)
for pattern in (
    ".*does not have many workers.*",
    ".*number of training batches.*smaller than the logging interval.*",
    ".*`isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
    ".*Checkpoint directory .* exists and is not empty.*",
):
    warnings.filterwarnings("ignore", message=pattern)
logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
