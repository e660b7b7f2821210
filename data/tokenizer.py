"""The project's own tokenizer: word level over the embedded corpus's closed vocabulary.

Built deterministically from `data/vocabulary.py` (no training run, no download) and shipped as
`data/tokenizer/tokenizer.json`; `python -m data.tokenizer` rebuilds it and a test checks the two agree.
Special tokens follow BART/LED ids (<s>=0, <pad>=1, </s>=2, <unk>=3); models built with it take these ids.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from data.vocabulary import all_words

SHIPPED = Path(__file__).parent / "tokenizer"
SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def build() -> Tokenizer:
    vocab = {tok: i for i, tok in enumerate(SPECIAL + all_words())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    # Pegasus-style: text then </s>; LED puts global attention on whatever the first token is.
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    return tok


def as_transformers(tok: Tokenizer):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>", mask_token="<mask>"
    )


def load_project_tokenizer():
    """The shipped tokenizer as a transformers tokenizer."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(SHIPPED))


if __name__ == "__main__":
    as_transformers(build()).save_pretrained(str(SHIPPED))
    print(f"wrote {SHIPPED}")
