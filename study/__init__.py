"""Run plumbing shared by train.py, infer.py and report.py: errors, run records, run status, DDP under Hydra."""
