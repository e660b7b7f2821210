"""SCROLLS data: sources (data/scrolls.py), the embedded corpus (data/synthetic.py), batching (data/datamodule.py)."""
