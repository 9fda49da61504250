"""Stand-ins for the model in tests of `infer.read_images`: a function of the images gives the texts."""


def texts_only(fake):
    """`fake(model, tokenizer, images, settings, **kw) -> texts` as `infer.generate_readings` (no confidence)."""

    def readings(model, tokenizer, images, settings, **kw):
        texts = fake(model, tokenizer, images, settings, **kw)
        return texts, [None] * len(texts)

    return readings
