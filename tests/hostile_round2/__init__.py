"""The hostile corpus of the second round: every class of crafted input, built from code at test time (no
binary fixtures in the repository), one module per class, each used by one test file.

| module | what it builds | test file |
| --- | --- | --- |
| `model_folders` | a folder that plants its own code (`auto_map`), and model/adapter folders whose files lie | `test_hostile_model_folders.py` |
| `outputs` | users' files and folders where `--out` points, FIFOs, `/dev/full`, and file names of any bytes and every line-break character | `test_hostile_outputs.py` |
| `bounds` | YAML alias bombs and deep nesting (recipes and overrides), numbers no key takes, `~user` homes that do not exist, FIFOs as input files, images large only once decoded | `test_hostile_bounds.py` |
| `disk` | a small tmpfs filled step by step during a run, an output folder made read-only or removed mid-run, a torn metrics.jsonl | `test_hostile_disk.py` |
| `checkpoints` | a real run's checkpoint whose consistent state.json vouches for contents that lie, non-finite weights, code in a pickle | `test_hostile_checkpoints.py` |

The first round's corpus (image files, labels and rows) is `tests/hostile_corpus.py`. Long sweeps of each
class carry the `slow` marker (`pytest -m slow`); a representative subset runs by default.
"""
