"""utils.scratch.attention against the library implementations it teaches, and the toy tasks of
utils.tasks.attention against reference loops."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from utils.scratch import attention as A
from utils.tasks import attention as T


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------ scaled dot-product attention


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("batch", [(), (3,), (2, 4)])
@pytest.mark.parametrize("mask", [None, "bool", "float", "bool_broadcast"])
@pytest.mark.parametrize("scale", [None, 1.0, 0.37])
def test_sdpa_matches_torch(seed, batch, mask, scale):
    g = _gen(seed)
    L, S, E, Ev = (int(v) for v in torch.randint(1, 9, (4,), generator=g))
    q = torch.randn(*batch, L, E, generator=g, dtype=torch.float64)
    k = torch.randn(*batch, S, E, generator=g, dtype=torch.float64)
    v = torch.randn(*batch, S, Ev, generator=g, dtype=torch.float64)
    m = None
    if mask == "bool":
        m = torch.rand(*batch, L, S, generator=g) > 0.4
        m[..., 0] = True  # every query may attend somewhere
    elif mask == "bool_broadcast":
        m = torch.rand(L, S, generator=g) > 0.4
        m[..., -1] = True
    elif mask == "float":
        m = torch.randn(*batch, L, S, generator=g, dtype=torch.float64)
    out, w = A.scaled_dot_product_attention(q, k, v, m, scale=scale)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=scale)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(w.sum(-1), torch.ones(*batch, L, dtype=torch.float64))


@pytest.mark.parametrize("seed", range(3))
def test_sdpa_causal_and_float32(seed):
    g = _gen(seed)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g) for _ in range(3))
    out, w = A.scaled_dot_product_attention(q, k, v, is_causal=True)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    assert torch.all(w.triu(1) == 0)


def test_sdpa_weights_are_softmax_of_scaled_scores():
    g = _gen(0)
    q, k, v = torch.randn(5, 16, generator=g), torch.randn(6, 16, generator=g), torch.randn(6, 2)
    _, w = A.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(w, torch.softmax(q @ k.T / 4.0, -1))


@pytest.mark.parametrize(
    "shapes,match",
    [
        (((2, 4, 8), (2, 5, 7), (2, 5, 3)), "head dim"),
        (((2, 4, 8), (2, 5, 8), (2, 6, 3)), "same length"),
        (((2, 4, 8), (3, 5, 8), (3, 5, 3)), "broadcast"),
        (((8,), (5, 8), (5, 3)), ">= 2 dims"),
    ],
)
def test_sdpa_bad_shapes(shapes, match):
    q, k, v = (torch.randn(*s) for s in shapes)
    with pytest.raises(ValueError, match=match):
        A.scaled_dot_product_attention(q, k, v)


def test_sdpa_bad_mask():
    q, k, v = torch.randn(2, 4, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match=r"attn_mask of shape \(4, 4\)"):
        A.scaled_dot_product_attention(q, k, v, torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool or floating"):
        A.scaled_dot_product_attention(q, k, v, torch.ones(4, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="not both"):
        A.scaled_dot_product_attention(q, k, v, torch.ones(4, 5, dtype=torch.bool), is_causal=True)
    with pytest.raises(TypeError, match="query must be a torch.Tensor"):
        A.scaled_dot_product_attention([1.0], k, v)


# ----------------------------------------------------------------------- multi-head attention


def _pair(E, H, bias, seed):
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(E, H, bias=bias, batch_first=True).double()
    with torch.no_grad():  # non-zero biases so that they are tested too
        for p in ref.parameters():
            p.add_(0.1 * torch.randn_like(p))
    mine = A.MultiHeadAttention(E, H, bias=bias).double()
    mine.load_state_dict(ref.state_dict())
    return mine.eval(), ref.eval()


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("E,H", [(8, 1), (12, 3), (16, 4)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "masks", ["none", "padding", "attn_bool", "attn_float", "both", "per_head"]
)
def test_mha_matches_torch(seed, E, H, bias, masks):
    mine, ref = _pair(E, H, bias, seed)
    g = _gen(seed + 100)
    N, L, S = 3, 5, 6
    q = torch.randn(N, L, E, generator=g, dtype=torch.float64)
    kv = torch.randn(N, S, E, generator=g, dtype=torch.float64)
    kw = {}
    if masks in ("padding", "both"):
        kp = torch.zeros(N, S, dtype=torch.bool)
        kp[0, -2:], kp[2, -1] = True, True
        kw["key_padding_mask"] = kp
    if masks in ("attn_bool", "both"):
        am = torch.rand(L, S, generator=g) > 0.6
        am[:, 0] = False  # True = not allowed; keep key 0 open
        kw["attn_mask"] = am
    if masks == "attn_float":
        kw["attn_mask"] = torch.randn(L, S, generator=g, dtype=torch.float64)
    if masks == "per_head":
        kw["attn_mask"] = torch.randn(N * H, L, S, generator=g, dtype=torch.float64)
    for avg in (True, False):
        out, w = mine(q, kv, kv, average_attn_weights=avg, **kw)
        r_out, r_w = ref(q, kv, kv, average_attn_weights=avg, **kw)
        torch.testing.assert_close(out, r_out, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(w, r_w, atol=1e-6, rtol=1e-6)
    assert w.shape == (N, H, L, S)


def test_mha_self_attention_default_and_gradients():
    mine, ref = _pair(12, 3, True, 0)
    x = torch.randn(2, 7, 12, dtype=torch.float64, requires_grad=True)
    out, _ = mine(x, need_weights=False)
    r_out, _ = ref(x, x, x, need_weights=False)
    torch.testing.assert_close(out, r_out)
    g1 = torch.autograd.grad(out.square().sum(), x)[0]
    g2 = torch.autograd.grad(r_out.square().sum(), x)[0]
    torch.testing.assert_close(g1, g2)


def test_mha_head_mask_removes_one_head():
    mine, _ = _pair(8, 2, True, 1)
    x = torch.randn(2, 4, 8, dtype=torch.float64)
    full, w = mine(x, average_attn_weights=False)
    zero_all, _ = mine(x, head_mask=torch.zeros(2))
    torch.testing.assert_close(zero_all, mine.out_proj.bias.expand_as(zero_all))
    # the output is linear in the per-head outputs: the two single-head parts add up
    h0, _ = mine(x, head_mask=torch.tensor([1.0, 0.0]))
    h1, _ = mine(x, head_mask=torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(h0 + h1 - mine.out_proj.bias, full)


@pytest.mark.parametrize("E,H", [(10, 3), (7, 2)])
def test_mha_indivisible_heads(E, H):
    with pytest.raises(ValueError, match=f"embed_dim \\({E}\\) must be divisible"):
        A.MultiHeadAttention(E, H)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            {"key_padding_mask": torch.zeros(2, 4, dtype=torch.bool)},
            r"key_padding_mask must be "
            r"\[N, S\] = \[2, 5\]",
        ),
        ({"attn_mask": torch.zeros(3, 3, dtype=torch.bool)}, r"attn_mask must be \[L, S\]"),
        ({"head_mask": torch.ones(3)}, r"head_mask must be \[H\] = \[2\]"),
    ],
)
def test_mha_bad_masks(kwargs, match):
    m = A.MultiHeadAttention(8, 2)
    q, kv = torch.randn(2, 4, 8), torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match=match):
        m(q, kv, kv, **kwargs)


def test_mha_bad_inputs():
    m = A.MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"query must be \[N, T, 8\].*got \(2, 4, 6\)"):
        m(torch.randn(2, 4, 6))
    with pytest.raises(ValueError, match="expected key and value"):
        m(torch.randn(2, 4, 8), torch.randn(3, 5, 8), torch.randn(3, 5, 8))
    with pytest.raises(ValueError, match="num_heads must be a positive int"):
        A.MultiHeadAttention(8, 0)


# --------------------------------------------------------------------------- softmax analysis


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("temperature", [0.1, 1.0, 10.0])
def test_softmax_jacobian_norm_and_entropy(seed, temperature):
    s = torch.randn(6, generator=_gen(seed), dtype=torch.float64) * temperature
    jac = torch.autograd.functional.jacobian(lambda z: torch.softmax(z, -1), s)
    torch.testing.assert_close(A.softmax_jacobian_norm(s), torch.linalg.matrix_norm(jac))
    p = torch.softmax(s, -1)
    torch.testing.assert_close(A.softmax_entropy(s), -(p * p.log()).sum())
    torch.testing.assert_close(A.softmax_entropy(torch.zeros(6)), torch.tensor(math.log(6)))


# -------------------------------------------------------------------- positional encodings


def test_sinusoidal_matches_paper_formula():
    pe = A.sinusoidal_encoding(50, 16, dtype=torch.float64)
    pos, i = 37, 5
    assert pe[pos, 2 * i] == pytest.approx(math.sin(pos / 10000 ** (2 * i / 16)))
    assert pe[pos, 2 * i + 1] == pytest.approx(math.cos(pos / 10000 ** (2 * i / 16)))
    assert A.sinusoidal_encoding(3, 5).shape == (3, 5)
    # a prefix of a longer table is the shorter table: no maximum length
    torch.testing.assert_close(A.sinusoidal_encoding(1000, 16)[:50], pe.float())
    with pytest.raises(ValueError, match="dim must be a positive int"):
        A.sinusoidal_encoding(4, 0)


def test_positional_encoding_add_concat_learned():
    x = torch.randn(2, 6, 8)
    add = A.PositionalEncoding("sinusoidal", 8)
    torch.testing.assert_close(add(x), x + A.sinusoidal_encoding(6, 8))
    cat = A.PositionalEncoding("sinusoidal", 4, combine="concat")
    assert cat(x).shape == (2, 6, 12) and cat.out_dim(8) == 12
    torch.testing.assert_close(cat(x)[..., :8], x)
    learned = A.PositionalEncoding("learned", 8, max_len=6)
    assert learned(x).shape == x.shape
    with pytest.raises(ValueError, match="exceeds max_len=6"):
        learned(torch.randn(2, 7, 8))
    with pytest.raises(ValueError, match="kind must be one of"):
        A.PositionalEncoding("rotary", 8)
    with pytest.raises(ValueError, match=r"add needs x \[N, L, 4\]"):
        A.PositionalEncoding("sinusoidal", 4)(x)
    torch.testing.assert_close(A.PositionalEncoding("none", 8)(x), x)


# --------------------------------------------------------------------- tiny transformer


@pytest.mark.parametrize("seed", range(3))
def test_no_pe_self_attention_is_permutation_equivariant(seed):
    torch.manual_seed(seed)
    model = A.TinyTransformer(vocab_size=9, num_classes=5, d_model=16, num_heads=2, pe="none")
    x = torch.randint(9, (4, 10))
    perm = torch.randperm(10)
    torch.testing.assert_close(model(x[:, perm]), model(x)[:, perm], atol=1e-5, rtol=1e-5)
    with_pe = A.TinyTransformer(
        vocab_size=9, num_classes=5, d_model=16, num_heads=2, pe="sinusoidal"
    )
    assert not torch.allclose(with_pe(x[:, perm]), with_pe(x)[:, perm], atol=1e-3)


@pytest.mark.parametrize("pool,shape", [("none", (3, 8, 4)), ("mean", (3, 4)), ("cls", (3, 4))])
@pytest.mark.parametrize("combine", ["add", "concat"])
def test_tiny_transformer_shapes(pool, shape, combine):
    m = A.TinyTransformer(
        input_dim=5,
        num_classes=4,
        d_model=16,
        num_heads=4,
        num_layers=2,
        pool=pool,
        combine=combine,
        pe="learned",
        causal=True,
    )
    out, maps = m(torch.randn(3, 8, 5), return_attention=True)
    assert out.shape == shape and len(maps) == 2
    assert maps[0].shape[:2] == (3, 4)
    with pytest.raises(ValueError, match=r"head_mask must be \[num_layers, H\] = \[2, 4\]"):
        m(torch.randn(3, 8, 5), head_mask=torch.ones(4))
    with pytest.raises(ValueError, match="exactly one of"):
        A.TinyTransformer(num_classes=3)


def test_patchify_row_major():
    img = torch.arange(2 * 1 * 4 * 6, dtype=torch.float32).view(2, 1, 4, 6)
    p = A.patchify(img, 2)
    assert p.shape == (2, 6, 4)
    torch.testing.assert_close(p[0, 1], torch.tensor([2.0, 3.0, 8.0, 9.0]))
    with pytest.raises(ValueError, match="dividing H=4 and W=6"):
        A.patchify(img, 4)


# ----------------------------------------------------------------------------- seq tasks


def test_previous_token_and_two_relations_targets():
    x, y = T.previous_token(8, 5, 4, generator=_gen(0))
    assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (8, 5)
    assert torch.equal(y[:, 1:], x[:, :-1]) and torch.all(y[:, 0] == T.IGNORE)
    assert int(x.min()) >= 0 and int(x.max()) < 4
    x2, y2 = T.two_relations(8, 5, 4, generator=_gen(0))
    assert torch.equal(x2, x)  # same generator, same tokens
    assert y2.shape == (8, 5, 2) and torch.equal(y2[..., 0], y)
    assert torch.all(y2[..., 1] == x2[:, :1])
    for kw, name in (({"n": 0}, "n"), ({"length": 1}, "length"), ({"vocab": 1.5}, "vocab")):
        with pytest.raises(ValueError, match=name):
            T.previous_token(**({"n": 2, "length": 3, "vocab": 4} | kw), generator=_gen(0))


def _loop_loss(logits, y):
    """Reference: cross-entropy of every valid (sequence, position, relation) target, averaged."""
    y3 = y if y.dim() == logits.dim() else y.unsqueeze(-1)
    v = logits.shape[-1] // y3.shape[-1]
    terms = []
    for b in range(y3.shape[0]):
        for i in range(y3.shape[1]):
            for r in range(y3.shape[2]):
                t = int(y3[b, i, r])
                if t != T.IGNORE:
                    row = logits[b, i, r * v : (r + 1) * v]
                    terms.append(torch.logsumexp(row, 0) - row[t])
    return torch.stack(terms).mean()


@pytest.mark.parametrize("task", [T.previous_token, T.two_relations])
def test_multi_target_loss_matches_a_loop(task):
    x, y = task(6, 5, 4, generator=_gen(1))
    r = 1 if y.dim() == 2 else y.shape[-1]
    logits = torch.randn(6, 5, 4 * r, generator=_gen(2), dtype=torch.float64)
    torch.testing.assert_close(T.multi_target_loss(logits, y), _loop_loss(logits, y))
    with pytest.raises(ValueError, match="must match"):
        T.multi_target_loss(logits[:, :4], y)
    if r > 1:
        with pytest.raises(ValueError, match="must match"):
            T.multi_target_loss(logits[..., :7], y)  # 7 logits do not split into 2 relations


def test_stacked_is_one_seeded_data_set_per_seed():
    xs, ys = T.stacked(T.two_relations, [3, 9], 4, 5, 6)
    assert xs.shape == (2, 4, 5) and ys.shape == (2, 4, 5, 2)
    for i, s in enumerate((3, 9)):
        x, y = T.two_relations(4, 5, 6, generator=_gen(s))
        assert torch.equal(xs[i], x) and torch.equal(ys[i], y)
    assert not torch.equal(xs[0], xs[1])
    with pytest.raises(ValueError, match="seeds"):
        T.stacked(T.previous_token, [], 4, 5, 6)


def test_a_tiny_transformer_learns_previous_token_through_train_fit():
    """The notebook's recipe end to end: train.fit on multi_target_loss learns the task, and a
    model without a positional encoding cannot (the task needs order)."""
    from utils.core import repro, train

    x, y = T.previous_token(256, 6, 4, generator=_gen(1))
    acc = {}
    for pe in ("learned", "none"):
        torch.manual_seed(0)
        m = A.TinyTransformer(
            vocab_size=4, num_classes=4, d_model=16, num_heads=2, d_ff=0, pe=pe, max_len=6
        )
        opt = torch.optim.Adam(m.parameters(), lr=2e-2)
        with repro.num_threads(1):  # tiny model: one thread is fastest and deterministic
            hist = train.fit(
                m,
                x,
                y,
                optimizer=opt,
                steps=120,
                batch_size=64,
                sampling="replacement",
                loss_fn=T.multi_target_loss,
                epoch_evals=False,
                progress=False,
            )
        assert len(hist["step_loss"]) == 120
        with torch.no_grad():
            pred = m.eval()(x).argmax(-1)
        acc[pe] = float((pred[:, 1:] == y[:, 1:]).float().mean())
    assert acc["learned"] > 0.9 and acc["none"] < 0.6
