"""Shared code of the Mentoring Lab notebooks, in five layers you can see from the tree.

==================  ===========================================================================
layer               modules
==================  ===========================================================================
``utils.core``      ``paths`` (repo root, build/, caches), ``repro`` (seeds, device, threads),
                    ``parallel`` (``pmap``: independent seeded jobs on every core, with the
                    numbers of a plain loop), ``data`` (offline real data), ``models``,
                    ``train`` (THE training loop: ``train.fit``), ``metrics``, ``plot``,
                    ``verdict`` (checked answers), ``check`` (exercise self-checks)
``utils.scratch``   the subject of the course, written from scratch and proven equal to a
                    library twin in ``tests/``: ``optim`` (torch.optim, adamp), ``norm``
                    (nn.BatchNorm*), ``attention`` (F.scaled_dot_product_attention,
                    nn.MultiheadAttention), ``bert`` (transformers' BertModel)
``utils.instruments`` measuring tools: ``landscape`` (Hessian-vector products, top Hessian
                    eigenvalue, loss slices), ``probes`` (gradient-direction probes),
                    ``stacked`` (vmapped training of many models with ``scratch.optim``'s
                    update functions), ``finetune`` (freezing, per-part learning rates),
                    ``augment``, ``raytune`` (the Ray Tune layer)
``utils.tasks``     data sets and toy problems of one notebook each; no training procedure
``utils.tooling``   ``bench`` (``make bench``), ``book`` (``make book``), ``answer_index``
==================  ===========================================================================

Import rule (``tests/test_layers.py`` enforces it, and that there is no import cycle)::

    tooling  ->  anything below
    tasks    ->  instruments, scratch, core      (a notebook imports only its own task module)
    instruments, scratch  ->  core               (instruments may also use scratch)
    core     ->  core only

The lesson itself (what is measured and how) lives in the notebooks; this package keeps the
mechanisms. Import what you need, e.g. ``from utils.core import data, train, verdict``.
"""

__version__ = "0.2.0"
