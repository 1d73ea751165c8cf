"""utils.attention and utils.seqtasks against the library implementations they teach."""

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


def test_tasks_and_training_learns_previous_token():
    x, y = T.previous_token(8, 5, 4, generator=_gen(0))
    assert torch.equal(y[:, 1:], x[:, :-1]) and torch.all(y[:, 0] == T.IGNORE)
    x2, y2 = T.two_relations(8, 5, 4, generator=_gen(0))
    assert y2.shape == (8, 5, 2) and torch.all(y2[..., 1] == x2[:, :1])
    xs, ys = (
        torch.stack(t)
        for t in zip(*[T.previous_token(256, 6, 4, generator=_gen(s)) for s in (1, 2)], strict=True)
    )
    models, curve = T.train_seeds(
        lambda: A.TinyTransformer(
            vocab_size=4, num_classes=4, d_model=16, num_heads=2, d_ff=0, pe="learned", max_len=6
        ),
        [1, 2],
        xs,
        ys,
        steps=120,
        lr=2e-2,
    )
    assert curve.shape == (120, 2)
    assert all(float(T.accuracy(m(xs[i]), ys[i])) > 0.9 for i, m in enumerate(models))
    with pytest.raises(ValueError, match="stacked per seed"):
        T.train_seeds(lambda: nn.Linear(2, 2), [1, 2, 3], xs, ys, steps=1)


def test_offset_attention_and_head_ablation():
    eye_prev = torch.diag(torch.ones(4), -1)[None, None]  # query i attends to key i-1
    w = torch.cat([eye_prev, torch.zeros(1, 1, 5, 5).index_fill(-1, torch.tensor([0]), 1.0)], 1)
    torch.testing.assert_close(T.offset_attention(w, offset=-1), torch.tensor([1.0, 0.25]))
    torch.testing.assert_close(T.offset_attention(w, key=0), torch.tensor([0.2, 1.0]))
    with pytest.raises(ValueError, match="exactly one"):
        T.offset_attention(w)
    torch.manual_seed(0)
    m = A.TinyTransformer(vocab_size=4, num_classes=8, d_model=8, num_heads=2, max_len=5).eval()
    x, y = T.two_relations(16, 5, 4, generator=_gen(0))
    table = T.head_ablation(m, x, y)
    assert table.shape == (3, 2) and torch.all((table >= 0) & (table <= 1))
