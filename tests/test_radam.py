"""The radam optimizer: RAdam as Transformer-Clinic trained with it."""

from __future__ import annotations

import pytest
import torch

from tests.plugin_support import PLUGIN

RAdam, parse_betas = PLUGIN.radam.RAdam, PLUGIN.radam.parse_betas


def _quadratic_steps(opt_cls, steps, **kwargs):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5, 3))
    target = torch.randn(5, 3)
    opt = opt_cls([w], **kwargs)
    history = []
    for _ in range(steps):
        opt.zero_grad()
        ((w - target) ** 2).sum().backward()
        opt.step()
        history.append(w.detach().clone())
    return history


def test_matches_torch_radam_when_degenerating_to_sgd():
    kwargs = {"lr": 0.01, "betas": (0.9, 0.98), "eps": 1e-8, "weight_decay": 0.01}
    ours = _quadratic_steps(RAdam, 20, degenerated_to_sgd=True, **kwargs)
    theirs = _quadratic_steps(torch.optim.RAdam, 20, decoupled_weight_decay=True, **kwargs)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


def test_no_update_while_variance_is_intractable():
    # beta2 = 0.98: rho_inf = 99 and rho_t = 1.0, 2.0, 3.0, 4.0, 4.95, 5.9 for t = 1..6,
    # so the first five steps leave the weights alone (Transformer-Clinic's RAdam).
    torch.manual_seed(0)
    start = torch.randn(5, 3)
    history = _quadratic_steps(RAdam, 6, lr=0.01, betas=(0.9, 0.98))
    for w in history[:5]:
        torch.testing.assert_close(w, start)
    assert not torch.allclose(history[5], start)


def test_parse_betas_never_evaluates_code():
    assert parse_betas("(0.9, 0.98)") == (0.9, 0.98)
    assert parse_betas([0.9, 0.999]) == (0.9, 0.999)
    with pytest.raises(ValueError, match="adam-betas"):
        parse_betas("__import__('os').system('true')")
    with pytest.raises(ValueError, match="two values"):
        parse_betas("(0.9, 1.5)")
