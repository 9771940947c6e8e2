"""Profile files: round trip into `adaptive`, and clear errors for bad ones."""

from __future__ import annotations

import json

import pytest
import torch
from fairseq import criterions

from admin.common import profiling
from tests.plugin_support import build, first_batch, parse_train_args


def _write(path, enc_layers=3, dec_layers=3, dim=64):
    omegas = lambda n: [1.0 + 0.1 * i for i in range(n)]  # noqa: E731
    profiling.write_profile(
        path,
        profiling.Profile(
            profiling.StackProfile(enc_layers, dim, omegas(2 * enc_layers)),
            profiling.StackProfile(dec_layers, dim, omegas(3 * dec_layers)),
        ),
    )


def test_adaptive_initialises_from_profile_and_trains(tiny_databin, tmp_path):
    path = tmp_path / "profile.json"
    _write(path)
    task, model = build(tiny_databin, "--init-type", "adaptive", "--admin-profile", str(path))
    doc = json.loads(path.read_text())
    for name in ("encoder", "decoder"):
        layers = getattr(model, name).layers
        got = torch.cat([layer.omega for layer in layers])  # (sublayers, dim)
        want = torch.tensor(doc[name]["omegas"]).unsqueeze(1).expand_as(got)
        torch.testing.assert_close(got, want)
    # A few real training steps: the loss falls and the omegas are trained.
    args = parse_train_args(tiny_databin, "--init-type", "adaptive", "--admin-profile", str(path))
    criterion = criterions.build_criterion(args, task)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = first_batch(task, "train")
    model.train()
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss, _, _ = criterion(model, batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert not torch.allclose(model.encoder.layers[0].omega[0], torch.ones(64))


def test_missing_profile(tiny_databin, tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(profiling.ProfileError, match=f"{path} does not exist"):
        build(tiny_databin, "--init-type", "adaptive", "--admin-profile", str(path))


def test_truncated_profile(tiny_databin, tmp_path):
    path = tmp_path / "profile.json"
    _write(path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(profiling.ProfileError, match=f"{path} is corrupt"):
        build(tiny_databin, "--init-type", "adaptive", "--admin-profile", str(path))


def test_profile_with_too_few_omegas(tmp_path):
    path = tmp_path / "profile.json"
    _write(path)
    doc = json.loads(path.read_text())
    doc["decoder"]["omegas"].pop()
    path.write_text(json.dumps(doc))
    with pytest.raises(profiling.ProfileError, match="decoder has 8 omegas, expected 9"):
        profiling.read_profile(path)


@pytest.mark.parametrize(
    ("enc", "dec", "dim", "message"),
    [
        (2, 3, 64, "encoder layers: profile has 2, model has 3"),
        (3, 6, 64, "decoder layers: profile has 6, model has 3"),
        (3, 3, 32, "encoder embed_dim: profile has 32, model has 64"),
    ],
)
def test_mismatched_profile(tiny_databin, tmp_path, enc, dec, dim, message):
    path = tmp_path / "profile.json"
    _write(path, enc, dec, dim)
    with pytest.raises(profiling.ProfileError, match=f"{path} does not fit the model.*{message}"):
        build(tiny_databin, "--init-type", "adaptive", "--admin-profile", str(path))


def test_adaptive_needs_a_profile_flag(tiny_databin):
    with pytest.raises(ValueError, match="requires --admin-profile"):
        build(tiny_databin, "--init-type", "adaptive")


def test_admin_variants_refuse_pre_ln(tiny_databin):
    with pytest.raises(ValueError, match="Post-LN method"):
        build(tiny_databin, "--init-type", "admin-logn", "--encoder-normalize-before")


def test_write_profile_is_atomic(tmp_path):
    path = tmp_path / "profile.json"
    _write(path)
    before = path.read_bytes()
    bad = profiling.Profile(
        profiling.StackProfile(3, 64, [1.0]), profiling.StackProfile(3, 64, [1.0] * 9)
    )
    with pytest.raises(profiling.ProfileError):
        profiling.write_profile(path, bad)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profile.json"]
