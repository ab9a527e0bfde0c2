"""Local stand-ins for models no hub can give us here: a Detoxify-format checkpoint with random
weights (tiny for tests, BERT-base-sized for timing), a tiny text classifier in Hugging Face's layout,
and a blank spaCy pipeline on disk.

They exercise the real loading and inference code; their scores mean nothing. Real accuracy comes
from the user's own checkpoint and spaCy model, configured by path.
"""

from __future__ import annotations

from pathlib import Path

DETOXIFY_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
SIZES = {
    # hidden, layers, heads, intermediate, vocabulary
    "tiny": (32, 2, 2, 64, 0),
    "base": (768, 12, 12, 3072, 30522),
}


def build_detoxify_checkpoint(out_dir: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write `base/` (config.json + tokenizer) and `model.ckpt`; return the checkpoint path."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    hidden, layers, heads, intermediate, vocab_size = SIZES[size]
    out = Path(out_dir)
    base = out / "base"
    base.mkdir(parents=True, exist_ok=True)
    vocab = _vocabulary(vocab_size)
    (base / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(base / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(base)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=512,
        num_labels=len(DETOXIFY_CLASSES),
        problem_type="multi_label_classification",
    )
    config.save_pretrained(base)
    model = BertForSequenceClassification(config).eval()
    checkpoint = out / "model.ckpt"
    torch.save(
        {
            "config": {
                "arch": {
                    "args": {
                        "model_type": str(base.resolve()),
                        "model_name": "BertForSequenceClassification",
                        "tokenizer_name": "BertTokenizerFast",
                        "num_classes": len(DETOXIFY_CLASSES),
                    }
                },
                "dataset": {"args": {"classes": DETOXIFY_CLASSES}},
            },
            "state_dict": model.state_dict(),
        },
        checkpoint,
    )
    return checkpoint


def build_text_classifier(out_dir: str | Path, labels: list[str], seed: int = 0) -> Path:
    """A tiny BERT sequence classifier in Hugging Face's folder layout (config.json with the labels,
    weights, a fast tokenizer), as `warden models export-classifier` expects one; return the folder."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    hidden, layers, heads, intermediate, vocab_size = SIZES["tiny"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = _vocabulary(vocab_size)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=True).save_pretrained(out)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=512,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    BertForSequenceClassification(config).eval().save_pretrained(out)
    return out


def build_blank_spacy(out_dir: str | Path) -> Path:
    """A blank English spaCy pipeline saved to disk: tokens only, loadable by path."""
    import spacy

    out = Path(out_dir)
    spacy.blank("en").to_disk(out)
    return out


def _vocabulary(size: int) -> list[str]:
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words += [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    words += [f"##{chr(c)}" for c in range(33, 127) if not chr(c).isupper()]
    from pydoc_data.topics import topics

    seen = set(words)
    for text in topics.values():
        for word in text.lower().split():
            word = "".join(c for c in word if c.isalnum())
            if word and word not in seen and len(words) < max(size, 2000):
                seen.add(word)
                words.append(word)
    while len(words) < size:
        words.append(f"[unused{len(words)}]")
    return words
