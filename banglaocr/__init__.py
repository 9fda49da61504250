"""banglaocr: fine-tune Qwen3-VL with LoRA to read handwritten Bangla words.

>>> import banglaocr
>>> banglaocr.__version__
'0.1.0'
"""

__version__ = "0.1.0"
