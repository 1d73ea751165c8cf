"""Source and target tasks for the transfer-learning notebook, and the cached source model.

* **Source task**: real MNIST digits 0-4 (:func:`utils.data.mnist`), average-pooled to 14x14
  so a tiny ResNet trains in seconds on a CPU.
* **Target tasks**: digits 5-9 (labels remapped to 0-4) with a controllable **domain
  distance** ``d`` in [0, 1]: a fixed random subset of ``round(d * 196)`` pixel positions is
  shuffled among itself (:func:`scramble`). ``d = 0`` is the near domain (same kind of images,
  new classes); ``d = 1`` is a fixed full pixel permutation, which keeps every pixel value and
  the label information (an MLP would not care) but destroys the spatial structure that a
  CNN's local filters learned on the source (the far domain). Yosinski et al. 2014
  (arXiv:1411.1792) measure how transferability falls with task distance.
* **Target-set size**: ``k`` labelled examples per class (:func:`utils.data.per_class_subset`),
  plus a validation set (80 per class, for choosing learning rates) and the fixed MNIST test images.
* **Source models** (:func:`load_sources`, :func:`load_or_pretrain`): one pretrained model per
  seed, a loader with a cache. Pretraining goes through :func:`utils.core.train.fit` pinned to
  one CPU thread; the file lives under ``build/cache/`` (``LAB_CACHE_DIR``), is written with
  ``torch.save`` and read with ``weights_only=True``, and is keyed on the configuration, seed,
  data, torch version, thread count, device type and a format version (:func:`cache_key`): a
  missing, unreadable, corrupt or stale file is recomputed, never a crash.

* **Grouped models** (:class:`GroupedResNet`, :func:`grouped_loss`, :func:`grouped_accuracy`):
  M same-shape ResNets run as one network (grouped convolutions, one BatchNorm over all the
  members' channels), so notebook 03 trains a whole row of its grid (distances x seeds) in one
  :func:`utils.core.train.fit` call; each member equals a separate model (tested).
  :func:`pick_members` assembles each member's chosen run (e.g. its lr) from several into one.

This module holds data, the cached source models and the grouped model only; the experiments
(the transfer grid, the forgetting runs, the learning-rate choice) are written in notebook 03.
Everything is built from the offline data in :mod:`utils.core.data`; nothing touches the network.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..core import data, parallel, paths, repro, train
from ..core.models import ResNet

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
SIDE = 14  # 28x28 MNIST average-pooled 2x2
_N_TRAIN, _N_TEST = 4000, 1000  # mnist(): 400 train / 100 test images per digit
PERMUTATION_SEED = 20140  # fixes the far domain; not LAB_SEED on purpose (the task is fixed)
CACHE_FORMAT = 2  # bump when the cache file layout or the pretraining procedure changes
PRETRAIN_THREADS = 1  # pretraining is pinned to this many CPU threads (part of the cache key)
EVAL_CHUNK = 50  # images per forward in grouped_accuracy: 1000-image chunks of a 15-member model
# allocate activations of ~100 MB each, which glibc maps and unmaps every time (more CPU time in
# page faults than in the convolutions); 50-image chunks keep them in the heap


def cache_dir() -> Path:
    """Cache folder: env ``LAB_CACHE_DIR`` or ``<repo>/build/cache`` (as ``verdict.record_dir``)."""
    return paths.cache_dir()


def _check_seed(seed) -> int:
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return seed


@functools.lru_cache(maxsize=2)
def _digits(classes: tuple[int, ...]):
    """MNIST 14x14 images of ``classes`` with labels remapped to 0..len(classes)-1.

    Cached (every cell of the grid needs them); callers must not modify the tensors in place.
    """
    split = data.mnist(_N_TRAIN, _N_TEST, scale="unit", shape="image")
    out = []
    for x, y in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        keep = torch.isin(y, torch.tensor(classes))
        lut = torch.full((10,), -1, dtype=torch.int64)
        lut[list(classes)] = torch.arange(len(classes))
        out += [F.avg_pool2d(x[keep], 2), lut[y[keep]]]
    return tuple(out)


def source_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The source task: MNIST digits 0-4 at 14x14.

    Returns:
        (x_train [2000, 1, 14, 14], y_train [2000], x_test [500, 1, 14, 14], y_test [500]);
        x float32 in [0, 1], y int64 in 0..4 (= the digit).
    """
    return _digits(SOURCE_CLASSES)


def scramble(x: torch.Tensor, distance: float, *, seed: int = PERMUTATION_SEED) -> torch.Tensor:
    """Shuffle a fixed fraction ``distance`` of the pixel positions of every image the same way.

    Args:
        x: images [N, C, H, W] (any float dtype).
        distance: fraction in [0, 1] of the H*W positions that are permuted among themselves
            (0: unchanged; 1: a full fixed pixel permutation). The chosen positions and their
            permutation depend only on ``seed``, H and W, so every image and every call agree;
            the positions for a smaller distance are a subset of those for a larger one.
        seed: seed of the positions and the permutation (default: the notebook's fixed one).

    Returns:
        Tensor like ``x`` with the pixels moved (values and labels untouched).

    Raises:
        TypeError: ``x`` not a tensor or ``distance`` not a real number.
        ValueError: ``x`` not 4-D or ``distance`` outside [0, 1].
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must have shape [N, C, H, W], got {tuple(x.shape)}")
    if not isinstance(distance, (int, float)) or isinstance(distance, bool):
        raise TypeError(f"distance must be a float in [0, 1], got {type(distance).__name__}")
    if not 0.0 <= distance <= 1.0:
        raise ValueError(f"distance must be in [0, 1], got {distance}")
    n_pix = x.shape[2] * x.shape[3]
    g = torch.Generator().manual_seed(_check_seed(seed))
    order = torch.randperm(n_pix, generator=g)
    chosen = order[: round(distance * n_pix)]
    perm = torch.arange(n_pix)
    perm[chosen] = chosen[torch.randperm(len(chosen), generator=g)]
    flat = x.flatten(2)[:, :, perm.to(x.device)]
    return flat.reshape(x.shape)


class TargetTask(NamedTuple):
    """A target task: train (k per class), validation and test sets; x [N, 1, 14, 14], y int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    distance: float
    k: int

    def to(self, device: str | torch.device) -> TargetTask:
        """The same task with the six tensors on ``device``."""
        return self._replace(**{f: getattr(self, f).to(device) for f in self._fields[:6]})


def target_task(distance: float, k: int, *, seed: int, val_per_class: int = 80) -> TargetTask:
    """Digits 5-9 (labels 0-4) at domain distance ``distance`` with ``k`` training images per class.

    The 400 training images per digit are split (stratified, seeded) into ``val_per_class``
    validation images and a pool; the ``k``-shot training set is drawn from the pool with
    :func:`utils.data.per_class_subset`. The test set is the fixed MNIST test split (100 per
    digit, 500 images). All three get the same :func:`scramble`.

    Args:
        distance: domain distance in [0, 1] (see :func:`scramble`).
        k: training images per class, 1 .. ``400 - val_per_class``.
        seed: seed of the validation split and the k-shot draw (vary it with LAB_SEED).
        val_per_class: validation images per class, 5..200.

    Returns:
        TargetTask with float32 x in [0, 1] and int64 y in 0..4.

    Raises:
        TypeError/ValueError: for arguments of the wrong type or out of range.
    """
    _check_seed(seed)
    for name, value, low, high in (
        ("val_per_class", val_per_class, 5, 200),
        ("k", k, 1, 400 - val_per_class),
    ):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if not low <= value <= high:
            raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    x_tr, y_tr, x_te, y_te = _digits(TARGET_CLASSES)
    x_tr, x_te = scramble(x_tr, distance), scramble(x_te, distance)
    frac = val_per_class * len(TARGET_CLASSES) / len(y_tr)
    x_pool, y_pool, x_val, y_val = data.train_val_split(x_tr, y_tr, frac, seed=seed)
    x_k, y_k = data.per_class_subset(x_pool, y_pool, k, seed=seed)
    return TargetTask(x_k, y_k, x_val, y_val, x_te, y_te, float(distance), k)


@dataclass(frozen=True)
class SourceConfig:
    """How the source model is built and pretrained (part of the cache key).

    widths/blocks: the :class:`utils.core.models.ResNet` shape (BatchNorm, residual blocks).
    residual: ``False`` builds the plain twin (the same network without shortcuts; T4's control).
    steps/batch_size/lr: Adam (Kingma & Ba 2014, arXiv:1412.6980) on the 2,000 source images.

    Raises:
        ValueError: a width, ``blocks``, ``steps`` or ``batch_size`` not a positive int, or
            ``lr`` not > 0.
    """

    widths: tuple[int, ...] = (8, 16, 32)
    blocks: int = 1
    steps: int = 150
    batch_size: int = 64
    lr: float = 3e-3
    residual: bool = True

    def __post_init__(self):
        if not self.widths or any(not isinstance(w, int) or w < 1 for w in self.widths):
            raise ValueError(f"widths must be positive ints, got {self.widths!r}")
        for name in ("blocks", "steps", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a float > 0, got {self.lr!r}")
        if not isinstance(self.residual, bool):
            raise ValueError(f"residual must be a bool, got {self.residual!r}")

    def build(self, num_classes: int = len(SOURCE_CLASSES)) -> ResNet:
        """A freshly initialised ResNet of this shape (uses the global torch RNG)."""
        return ResNet(
            1, num_classes, self.widths, self.blocks, norm="batch", residual=self.residual
        )

    def key(self) -> dict:
        """The configuration as plain types (part of :func:`cache_key`)."""
        d = asdict(self)
        d["widths"] = list(self.widths)
        if d["residual"]:  # the residual default keeps the key (and cache files) of format 2
            del d["residual"]
        return d


@functools.lru_cache(maxsize=1)
def _data_fingerprint() -> str:
    x, y, _, _ = source_data()
    h = hashlib.sha256(x.numpy().tobytes())
    h.update(y.numpy().tobytes())
    return h.hexdigest()[:16]


def init_model(config: SourceConfig, seed: int, num_classes: int = len(SOURCE_CLASSES)) -> ResNet:
    """A ResNet of ``config``'s shape initialised from ``seed`` (global RNG left untouched).

    Raises:
        TypeError/ValueError: ``seed`` not an int >= 0.
    """
    _check_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return config.build(num_classes)


def cache_key(config: SourceConfig, seed: int, device: str | torch.device = "cpu") -> dict:
    """Everything the pretrained weights depend on, as plain types (stored in the cache file).

    The configuration, the seed, the source data (a SHA-256 fingerprint), the torch version,
    the number of CPU threads of the pretraining (:data:`PRETRAIN_THREADS`, pinned, so the
    caller's thread count does not matter), the device type (CPU and CUDA kernels differ) and
    :data:`CACHE_FORMAT` (bumped when the file layout or the pretraining procedure changes).
    """
    return {
        **config.key(),
        "seed": _check_seed(seed),
        "data": _data_fingerprint(),
        "torch": str(torch.__version__),  # a TorchVersion object would not load weights_only
        "threads": PRETRAIN_THREADS,
        "device": torch.device(device).type,
        "format": CACHE_FORMAT,
    }


def pretrain(config: SourceConfig, seed: int, device: str | torch.device = "cpu"):
    """Train a source model from scratch: ``config.steps`` Adam steps on digits 0-4.

    A loader's step, not a lesson: it trains through :func:`utils.core.train.fit` (shuffled
    mini-batches of ``config.batch_size``, example order seeded by ``seed``) with the CPU
    pinned to :data:`PRETRAIN_THREADS` thread(s) (``repro.num_threads``), so the same seed gives
    the same weights whatever ``LAB_THREADS`` says.

    Returns:
        (model in eval mode on ``device``, ``{"source_test_acc": float in [0, 1],
        "cached": False}``).

    Raises:
        TypeError/ValueError: ``seed`` not an int >= 0.
    """
    with repro.num_threads(PRETRAIN_THREADS):
        x, y, xt, yt = (t.to(device) for t in source_data())
        model = init_model(config, seed).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        train.fit(
            model,
            x,
            y,
            optimizer=opt,
            steps=config.steps,
            batch_size=config.batch_size,
            seed=seed,
            epoch_evals=False,
            progress=False,
        )
        model.eval()
        acc = train.evaluate(model, xt, yt)["acc"]
    return model, {"source_test_acc": acc, "cached": False}


def cache_path(
    config: SourceConfig,
    seed: int,
    directory: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> Path:
    """File of the cached source model: ``t03_source_<hash of cache_key>_seed<seed>.pt``."""
    key = json.dumps(cache_key(config, seed, device), sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    folder = Path(directory) if directory is not None else cache_dir()
    return folder / f"t03_source_{digest}_seed{seed}.pt"


def _read(path: Path, config: SourceConfig, key: dict, device):
    """The cached model, or None if the file is missing, unreadable, corrupt or stale."""
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
        if not (isinstance(blob, dict) and blob.get("key") == key):
            return None
        model = config.build()
        model.load_state_dict(blob["state_dict"])
        return model.to(device).eval(), {
            "source_test_acc": float(blob["source_test_acc"]),
            "cached": True,
        }
    except Exception:  # noqa: BLE001 - any unreadable/corrupt cache means: recompute
        return None


def load_or_pretrain(
    config: SourceConfig,
    seed: int,
    *,
    directory: str | Path | None = None,
    device: str | torch.device = "cpu",
):
    """The pretrained source model for ``seed``: from the cache if valid, else trained and cached.

    The file holds ``{"key": cache_key(...), "state_dict", "source_test_acc"}`` (plain types
    and tensors only, so ``torch.load(weights_only=True)`` reads it). It is written to a
    temporary file and renamed, so a reader never sees half a file. Any problem reading it
    (missing, truncated, not a torch file, another key: config, seed, data, torch version,
    threads, device or format; wrong tensor names or shapes) means: pretrain again. A
    read-only cache folder is not an error (the model is just not saved).

    Args:
        config: the :class:`SourceConfig`. seed: init and data-order seed (>= 0).
        directory: cache folder (default :func:`cache_dir`). device: where the model lives.

    Returns:
        (model in eval mode, info) with info ``{"source_test_acc": float, "cached": bool}``.

    Raises:
        TypeError: if ``config`` is not a SourceConfig or ``seed`` not an int.
        ValueError: if ``seed`` is negative.
    """
    if not isinstance(config, SourceConfig):
        raise TypeError(f"config must be a SourceConfig, got {type(config).__name__}")
    key = cache_key(config, seed, device)
    path = cache_path(config, seed, directory, device)
    hit = _read(path, config, key, device) if path.exists() else None
    if hit is not None:
        return hit
    model, info = pretrain(config, seed, device)
    blob = {
        "key": key,
        "source_test_acc": info["source_test_acc"],
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        torch.save(blob, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a cache is ordinary build output
        os.replace(tmp, path)  # atomic: parallel runs never read half a file
    except OSError:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)  # a read-only checkout still runs, it just does not cache
    return model, info


def load_sources(
    config: SourceConfig,
    seeds,
    *,
    directory: str | Path | None = None,
    device: str | torch.device = "cpu",
):
    """One source model per seed (:func:`load_or_pretrain`), with a one-line note on a cold run.

    When some models are not in the cache yet, prints before pretraining them that they are
    pretrained once (pinned to :data:`PRETRAIN_THREADS` thread) and cached for the next runs.
    The missing ones pretrain in parallel (:func:`utils.core.parallel.pmap`, the same weights
    as one by one).

    Returns:
        (list of models, list of info dicts), in the order of ``seeds``.

    Raises:
        as :func:`load_or_pretrain`; ValueError for an empty ``seeds``.
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    missing = [
        s
        for s in seeds
        if _read(
            cache_path(config, s, directory, device), config, cache_key(config, s, device), device
        )
        is None
    ]
    if missing:
        folder = Path(directory) if directory is not None else cache_dir()
        print(
            f"Pretraining {len(missing)} source model(s) once ({PRETRAIN_THREADS} thread, a few "
            f"seconds each); cached in {folder} so the next run loads them."
        )
    # the missing ones pretrain side by side on the machine's cores (each is seeded: same weights)
    fetch = functools.partial(load_or_pretrain, config, directory=directory, device=device)
    fresh = dict(zip(missing, parallel.pmap(fetch, missing), strict=True))
    loaded = [fresh[s] if s in fresh else fetch(s) for s in seeds]
    return [m for m, _ in loaded], [i for _, i in loaded]


# --- Many small ResNets as one network (the notebook's grid runs in a few batched fits) ---------


def _grouped_conv(convs) -> nn.Conv2d:
    """M same-shape convs as one grouped conv: member m reads and writes its own channel block."""
    c = convs[0]
    out = nn.Conv2d(
        c.in_channels * len(convs),
        c.out_channels * len(convs),
        c.kernel_size,
        c.stride,
        c.padding,
        groups=len(convs),
        bias=c.bias is not None,
    )
    with torch.no_grad():
        out.weight.copy_(torch.cat([m.weight for m in convs]))
        if c.bias is not None:
            out.bias.copy_(torch.cat([m.bias for m in convs]))
    return out


def _grouped_bn(bns) -> nn.BatchNorm2d:
    """M BatchNorms as one over M*C channels (BatchNorm is per channel, so nothing mixes)."""
    b = bns[0]
    out = nn.BatchNorm2d(b.num_features * len(bns), eps=b.eps, momentum=b.momentum)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(out, name).copy_(torch.cat([getattr(m, name) for m in bns]))
        out.num_batches_tracked.copy_(bns[0].num_batches_tracked)
    return out


def _grouped(module, members):
    """The grouped twin of a conv / BatchNorm / Sequential / Identity / ReLU of M members."""
    if isinstance(module, nn.Conv2d):
        return _grouped_conv(members)
    if isinstance(module, nn.BatchNorm2d):
        return _grouped_bn(members)
    if isinstance(module, nn.Sequential):
        return nn.Sequential(
            *[_grouped(sub, [m[i] for m in members]) for i, sub in enumerate(module)]
        )
    if isinstance(module, (nn.Identity, nn.ReLU)):
        return copy.deepcopy(module)
    raise TypeError(f"cannot group a {type(module).__name__}")


class GroupedLinear(nn.Module):
    """M independent linear layers: features [B, M, C] -> logits [B, M, K]."""

    def __init__(self, linears):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in linears]).clone())
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in linears]).clone())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bmc,mkc->bmk", h, self.weight) + self.bias


class GroupedBlock(nn.Module):
    """M :class:`utils.core.models.BasicBlock` s as one (grouped convs, M*C-channel BatchNorm)."""

    def __init__(self, blocks):
        super().__init__()
        b = blocks[0]
        self.residual = b.residual
        for name in ("conv1", "norm1", "conv2", "norm2", "shortcut"):
            setattr(self, name, _grouped(getattr(b, name), [getattr(m, name) for m in blocks]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(torch.relu(self.norm1(self.conv1(x)))))
        if self.residual:
            out = out + self.shortcut(x)
        return torch.relu(out)


class GroupedResNet(nn.Module):
    """M same-shape ResNets (:class:`utils.core.models.ResNet`, BatchNorm) run as one network.

    Every conv becomes a grouped conv (``groups=M``) and every BatchNorm one BatchNorm over the
    M*C channels, so member m only ever sees its own channels: the output of member m equals
    ``models[m](x[:, m:m+1])`` in train and eval mode (batch statistics and running statistics
    per member), and so do its gradients (``tests/test_tasks_transfer.py``). Training all M as
    one model through :func:`utils.core.train.fit` with :func:`grouped_loss` (the sum of the
    members' mean losses: each member gets exactly its own gradient) is training M models on
    the same example indices, at the cost of one. Parts are named as in a ResNet (``stem``,
    ``stage1`` .., ``head``), so :func:`utils.instruments.finetune.freeze`, ``train_mode`` and
    ``param_groups`` work on it unchanged.

    Args:
        models: M >= 1 ResNets of one shape with one input channel (not modified).

    Input [B, M, H, W] (channel m: member m's image); output logits [B, M, K];
    :meth:`features` gives [B, M, C].

    Raises:
        ValueError: empty ``models``, models of different shapes or more than one input channel.
    """

    def __init__(self, models):
        super().__init__()
        models = list(models)
        if not models:
            raise ValueError("models must hold at least one ResNet")
        shapes = [[(n, tuple(p.shape)) for n, p in m.named_parameters()] for m in models]
        if any(s != shapes[0] for s in shapes) or any(
            getattr(m, "stage_names", None) != models[0].stage_names for m in models
        ):
            raise ValueError("all models must be ResNets of the same shape")
        if models[0].stem[0].in_channels != 1:
            raise ValueError("GroupedResNet takes one-channel ResNets")
        self.members = len(models)
        self.stem = _grouped(models[0].stem, [m.stem for m in models])
        self.stage_names = list(models[0].stage_names)
        for name in self.stage_names:
            stages = [getattr(m, name) for m in models]
            blocks = [GroupedBlock([s[i] for s in stages]) for i in range(len(stages[0]))]
            self.add_module(name, nn.Sequential(*blocks))
        self.head = GroupedLinear([m.head for m in models])
        self.feature_dim = models[0].feature_dim
        # channels-last (NHWC) conv weights and activations: oneDNN's grouped convs run about 15 %
        # faster on CPU in that layout (measured on the target tasks' 14x14 images, 15 members);
        # the numbers equal the separate models' to float rounding, as before
        self.to(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features [B, M, C] of input [B, M, H, W]."""
        if x.dim() != 4 or x.shape[1] != self.members:
            raise ValueError(f"x must be [B, {self.members}, H, W], got {tuple(x.shape)}")
        h = self.stem(x.contiguous(memory_format=torch.channels_last))
        for name in self.stage_names:
            h = getattr(self, name)(h)
        return h.mean(dim=(2, 3)).view(len(x), self.members, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def pick_members(models, choice) -> GroupedResNet:
    """One grouped model whose member m is member m of ``models[choice[m]]`` (weights and BN stats).

    After training the same members at several learning rates (one :class:`GroupedResNet` per
    lr), this assembles each member's chosen run into one model, so the chosen runs are
    evaluated in one pass instead of evaluating every candidate. Every parameter and buffer of
    a grouped model is member-major (conv/BatchNorm tensors stack M blocks on dim 0, the head
    stacks M on dim 0), so member m's slice is row m of ``tensor.reshape(M, -1)``.

    Args:
        models: R >= 1 :class:`GroupedResNet` s of the same shape and member count M (not modified).
        choice: M ints in 0..R-1 (e.g. ``val_acc.argmax(0)``).

    Raises:
        ValueError: models of different shapes, or ``choice`` not M indices into ``models``.
    """
    models = list(models)
    states = [m.state_dict() for m in models]
    members = models[0].members
    choice = torch.as_tensor(choice, dtype=torch.int64).reshape(-1)
    if len(choice) != members or not bool(((choice >= 0) & (choice < len(models))).all()):
        raise ValueError(f"choice must be {members} indices in 0..{len(models) - 1}, got {choice}")
    shapes = [{k: v.shape for k, v in s.items()} for s in states]
    if any(m.members != members or sh != shapes[0] for m, sh in zip(models, shapes, strict=True)):
        raise ValueError("all models must be GroupedResNets of the same shape")
    out = copy.deepcopy(models[0])
    rows = torch.arange(members)
    with torch.no_grad():
        for name, t in out.state_dict().items():
            if t.dim() == 0:  # num_batches_tracked: one counter for all members
                continue
            stacked = torch.stack([s[name].reshape(members, -1) for s in states])  # [R, M, -1]
            t.copy_(stacked[choice, rows].reshape(t.shape))
    return out


def grouped_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over the M members of each member's mean cross-entropy: logits [B, M, K], y [B, M].

    Members share no parameters, so the gradient of this sum with respect to member m's
    weights is the gradient of member m's own mean loss (``loss_fn`` of :func:`train.fit`).
    """
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / len(y)


@torch.no_grad()
def grouped_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, head=None) -> torch.Tensor:
    """Per-member top-1 accuracy [M] of a :class:`GroupedResNet` (eval mode; modes restored).

    Args:
        x: [B, M, H, W]; y: int64 [B, M]. head: another :class:`GroupedLinear` to score the
            model's features with (e.g. the kept source heads: forgetting), default its own.
    """
    modes = [m.training for m in model.modules()]
    model.eval()
    feats = torch.cat([model.features(x[i : i + EVAL_CHUNK]) for i in range(0, len(x), EVAL_CHUNK)])
    logits = (head or model.head)(feats)
    for m, mode in zip(model.modules(), modes, strict=True):
        m.training = mode
    return (logits.argmax(-1) == y).float().mean(0)


def stack_tasks(tasks, field: str) -> torch.Tensor:
    """One field of M target tasks side by side: x fields -> [N, M, H, W], y fields -> [N, M]."""
    parts = [getattr(t, field) for t in tasks]
    return torch.cat(parts, dim=1) if parts[0].dim() == 4 else torch.stack(parts, dim=1)
