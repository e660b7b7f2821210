"""The demo task's reference points, scored with the project's metric on the demo's 64 validation documents:
a reader that copies every fact inside the first seq_len tokens and guesses the rest (the ceiling truncation
leaves), and one that guesses every fact (seq_len 0). Guesses are uniform over the attribute's 8 values; the mean
over 20 draws is printed.
    python scripts/demo_bounds.py                                              # the demo's corpus
    python scripts/demo_bounds.py --n 32 --doc-tokens 4096 --lengths 0,1024,2048,3072,4096   # the H200 study's
"""

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data.datamodule import encode_inputs  # noqa: E402
from data.synthetic import ATTRIBUTES, generate_split  # noqa: E402
from data.tokenizer import load_project_tokenizer  # noqa: E402
from lightning_modules.metrics import score  # noqa: E402

ap = argparse.ArgumentParser(description="the ceiling truncation leaves and the guessing floor, in Rgm")
ap.add_argument("--n", type=int, default=64, help="validation documents (data.synthetic.n_validation)")
ap.add_argument("--doc-tokens", type=int, default=512, help="data.synthetic.doc_tokens")
ap.add_argument("--lengths", default="0,128,256,512", help="seq_len values (0: guessing every fact)")
args = ap.parse_args()
# conf/experiment/demo.yaml's corpus by default
rows = generate_split("validation", "summarization", args.n, doc_tokens=args.doc_tokens, n_facts=8, seed=0, mentions=3)
tok = load_project_tokenizer()
refs = {r["id"]: [r["output"]] for r in rows}
attributes = list(ATTRIBUTES)[:8]
for seq_len in (int(x) for x in args.lengths.split(",")):
    draws = []
    for seed in range(20):
        rng = random.Random(seed)
        preds = {}
        for r in rows:
            seen = set(tok.decode(encode_inputs(tok, [r["input"]], seq_len)[0], skip_special_tokens=True).split()) if seq_len else set()
            preds[r["id"]] = " ".join(v if v in seen else rng.choice(ATTRIBUTES[a]) for a, v in zip(attributes, r["output"].split()))
        draws.append(score("summarization", preds, refs)["rgm"])
    print(f"seq_len {seq_len:4d}: Rgm {sum(draws) / len(draws):5.1f} (draws {min(draws):.1f}-{max(draws):.1f})")
