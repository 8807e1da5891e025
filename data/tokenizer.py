"""Build a small WordPiece tokenizer that ``transformers.AutoTokenizer.from_pretrained`` can load."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def train_wordpiece_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 4000) -> Path:
    """Build a lowercasing WordPiece tokenizer from a corpus (accents kept: umlauts and Cyrillic survive), save it.

    The vocabulary is the special tokens, every character seen (as a word start and as a ``##`` continuation, so
    nothing seen is ever ``[UNK]``), then whole words by descending frequency up to ``vocab_size``. It is built
    here rather than by ``tokenizers``' ``WordPieceTrainer`` because that trainer breaks ties in hash-map order,
    so its vocabulary changes from run to run; this one is a pure function of the corpus.

    Args:
        texts: the training corpus, one sentence per item.
        out_dir: folder to ``save_pretrained`` into (loadable with ``AutoTokenizer.from_pretrained``).
        vocab_size: upper bound on the vocabulary when the corpus has enough words.
    Returns:
        ``out_dir``.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False, clean_text=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for word in counts for c in word})
    tokens = list(SPECIAL_TOKENS) + chars + ["##" + c for c in chars]
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1]
    tokens += words[: max(0, vocab_size - len(tokens))]
    tok = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(tokens)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=512,
        model_input_names=["input_ids", "attention_mask"],
    )
    fast.save_pretrained(str(out_dir))
    return Path(out_dir)
