"""Model factory: base, tiny random models, tokenizers, LoRA, quantisation."""
