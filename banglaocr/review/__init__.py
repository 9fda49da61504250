"""The review page: a person checks the model's readings, word by word, and every correction becomes
training data at once.

- `inputs`: INPUT (predictions, a segment output, a folder of crops) -> review items, least confident first;
- `dataset`: the imagefolder data set the corrections go into (atomic, fsync'd, resumable);
- `app`: the Starlette web app (the page, the items, the images, saving), local and size-limited;
- `page.html`, `page.js`, `page.css`: the page itself, plain files (no build step, nothing from the network).

`banglaocr review INPUT --out DATASET` (banglaocr/cli/review.py) puts them together.
"""
