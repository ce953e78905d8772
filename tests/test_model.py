"""Tiny-config FG-Net: shapes, feature-group ablations, converted-file round trip."""

from __future__ import annotations

import itertools

import pytest
import torch

from fgnet_video.errors import UserError
from fgnet_video.model.config import FEATURE_GROUPS, FULL, TINY, FGNetConfig
from fgnet_video.model.fgnet import FGNet, decode_heatmaps
from fgnet_video.model.init import random_model
from fgnet_video.weights.checkpoints import load_model, save_converted

GROUP_CHOICES = [c for r in (1, 2, 3) for c in itertools.combinations(FEATURE_GROUPS, r)]


def _images(batch: int = 2, size: int = TINY.image_size, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_full_config_matches_the_release_layout():
    assert FULL.n_levels == 9 and FULL.n_styles == 18
    assert FULL.level_resolutions == (4, 8, 16, 32, 64, 128, 256, 512, 1024)
    groups = [FULL.level_group(i) for i in range(9)]
    assert groups == ["early"] * 3 + ["middle"] * 3 + ["late"] * 3
    assert FULL.with_features("early,middle").computed_levels == 6


@pytest.mark.parametrize("groups", GROUP_CHOICES, ids=lambda g: "+".join(g))
def test_tiny_forward_shapes_for_every_feature_group_choice(groups):
    config = TINY.with_features(groups)
    torch.manual_seed(0)
    model = FGNet(config).eval()
    with torch.no_grad():
        trace = model.trace(_images())
    assert trace.heatmaps.shape == (2, 32, TINY.heatmap_size, TINY.heatmap_size)
    assert torch.isfinite(trace.heatmaps).all()
    expected_levels = TINY.n_levels if "late" in groups else config.computed_levels
    assert len(trace.features) == expected_levels
    for level, feature in enumerate(trace.features):
        side = TINY.level_resolutions[level]
        assert feature.shape == (2, TINY.generator_channels[level], side, side)


def test_without_late_the_fine_blocks_are_never_run():
    model = FGNet(TINY.with_features("early,middle")).eval()
    calls = []
    late_levels = [i for i in range(TINY.n_levels) if TINY.level_group(i) == "late"]
    for level in late_levels:
        model.g_all.convs[2 * level - 1].register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        model(_images())
    assert late_levels and calls == []


def test_switched_off_groups_do_not_influence_the_heatmaps():
    torch.manual_seed(0)
    model = FGNet(TINY.with_features("early,late")).eval()
    with torch.no_grad():
        trace = model.trace(_images())
        features = [f.clone() for f in trace.features]
        for level in range(TINY.n_levels):
            if TINY.level_group(level) == "middle":
                features[level] += 10.0
        assert torch.equal(model.interpreter(features), trace.heatmaps)


def test_all_groups_do_influence_the_heatmaps():
    torch.manual_seed(0)
    model = FGNet(TINY).eval()
    with torch.no_grad():
        trace = model.trace(_images())
        for level in range(TINY.n_levels):
            features = [f.clone() for f in trace.features]
            features[level] += 1.0
            assert not torch.equal(model.interpreter(features), trace.heatmaps), level


def test_decode_clamps_and_keeps_the_first_channels():
    raw = torch.zeros(1, 32, 4, 4)
    raw[0, 0] = 3.0
    raw[0, 1, :2] = -5.0
    heatmaps, scores = decode_heatmaps(raw, 12)
    assert heatmaps.shape == (1, 12, 4, 4)
    assert heatmaps.max() == 1.0 and heatmaps.min() == -1.0
    assert scores[0, 0] == 1.0 and scores[0, 1] == -0.5 and scores[0, 2] == 0.0


def test_converted_round_trip_gives_identical_outputs(tmp_path):
    model = random_model(TINY, seed=3)
    path = save_converted(tmp_path / "m.safetensors", model, "disfa", (1, 2, 4, 6, 9, 12, 25, 26))
    loaded = load_model(path)
    assert loaded.dataset == "disfa" and loaded.aus == (1, 2, 4, 6, 9, 12, 25, 26)
    assert loaded.model.config == TINY
    x = _images()
    with torch.no_grad():
        assert torch.equal(model(x), loaded.model(x))
    with pytest.raises(UserError, match="is for disfa, not bp4d"):
        load_model(path, dataset="bp4d")


def test_feature_override_on_load(tmp_path):
    path = save_converted(tmp_path / "m.safetensors", random_model(TINY), "custom", (1, 2))
    loaded = load_model(path, features="early,middle")
    assert loaded.model.config.features == ("early", "middle")


def test_config_rejects_bad_sizes():
    with pytest.raises(UserError, match="feature groups"):
        TINY.with_features("early,bogus")
    with pytest.raises(UserError, match="generator_channels"):
        FGNetConfig(resolution=256)
    assert FGNetConfig.from_dict(TINY.to_dict()) == TINY
