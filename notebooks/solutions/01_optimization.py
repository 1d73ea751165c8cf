"""Reference solutions of notebook 01's exercises (and one wrong answer each).

Under ``LAB_CHECK_SOLUTIONS`` (set by the test suite) every ``utils.core.check`` call in the
notebook grades ``SOLUTIONS[id]``, which must pass, and ``WRONG[id]``, which must fail. Try the
exercises before you read on.
"""

import torch


def adam(w: torch.Tensor, grads: torch.Tensor, lr: float) -> torch.Tensor:
    """Adam in PyTorch's form (Kingma & Ba 2015, arXiv:1412.6980): bias-corrected moments,
    ε added outside the square root."""
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    w, m, v = w.clone(), torch.zeros_like(w), torch.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        w = w - lr * m_hat / (v_hat.sqrt() + eps)
    return w


def _adam_without_bias_correction(w: torch.Tensor, grads: torch.Tensor, lr: float) -> torch.Tensor:
    """A wrong answer: without the bias corrections the first steps are far too small."""
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    w, m, v = w.clone(), torch.zeros_like(w), torch.zeros_like(w)
    for g in grads:
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        w = w - lr * m / (v.sqrt() + eps)
    return w


SOLUTIONS = {
    # O6's prediction: heavy ball at lr 0.01, β 0.9 on f = ½(x² + 100y²); in y (ηh = 1) the
    # iteration's roots solve λ² - (1 + β - ηh)λ + β = 0: complex, modulus √β, angle
    # θ = arccos((1 + β - ηh) / (2√β)) ≈ 62° per step, so y changes sign every 180/62 ≈ 2.9
    # steps: about 34 flips in 100 steps (|y| stays above the 1e-6 cut-off for ~260 steps)
    "01.1": 34,
    "01.2": adam,
    # per-coordinate scaling divides each coordinate by its own gradient RMS; that is a diagonal
    # preconditioner, which can undo curvature only along the coordinate axes
    "01.3": "b",
}

WRONG = {
    "01.1": 100,  # one flip per step: the oscillation does not decay that slowly
    "01.2": _adam_without_bias_correction,
    "01.3": "c",  # a rotation keeps the eigenvalues (and the condition number)
}
