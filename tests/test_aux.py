"""Auxiliary tasks on unlabeled frames: RoI masks, flow targets, frame pairs, training with
inpainting and flow (losses fall, resume is exact), the supervised path untouched when off,
and side-by-side evaluation of two checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from safetensors.torch import load_file

from fgnet_video.cli import main
from fgnet_video.errors import UserError
from fgnet_video.media.images import read_rgb
from fgnet_video.media.video import read_frames
from fgnet_video.model.config import TINY
from fgnet_video.model.fgnet import FGNet
from fgnet_video.model.init import random_model
from fgnet_video.train.data import DataIssues, FrameDataset, collate_frames, read_labels
from fgnet_video.train.evaluate import comparison_table, run_labels
from fgnet_video.train.flow import endpoint_error, flow_target, load_flow_head
from fgnet_video.train.inpaint import distinct_roi_indices, masked_l1, roi_masks
from fgnet_video.train.loop import make_optimizer, train
from fgnet_video.train.model_init import freeze_unreached, initial_model
from fgnet_video.train.options import TrainOptions
from fgnet_video.train.preprocess import preprocess, read_videos
from fgnet_video.train.sampler import EpochBatchSampler
from fgnet_video.train.state import seed_everything
from fgnet_video.train.targets import heatmap_targets_torch, roi_points
from fgnet_video.train.unlabeled import flow_partners, load_frames, split_sources
from fgnet_video.weights.checkpoints import load_model, save_converted

from .conftest import metrics_records, shared_path

AUS = (1, 12, 25)
CLIP_FRAMES = 12


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny-model training is many small ops: one thread suits a shared 2-core CI runner."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- RoI masks ------------------------------------------------------------------------------------

def _face_landmarks() -> np.ndarray:
    """68 points with known positions for the ROIs used below (256-px coordinates)."""
    points = np.tile([128.0, 128.0], (68, 1))
    points[21], points[22] = (100.0, 80.0), (152.0, 84.0)  # AU1: inner brows
    points[36:42] = (88.0, 100.0)  # left eye (mean 88, 100)
    points[42:48] = (168.0, 100.0)  # right eye
    points[39], points[42] = (110.0, 100.0), (140.0, 100.0)  # inner corners: IOD 30
    points[36], points[45] = (66.0, 100.0), (196.0, 100.0)  # eye means stay (88 | 168, 100)
    points[48], points[54] = (96.0, 180.0), (160.0, 180.0)  # mouth corners
    return points


def test_masks_are_squares_centred_on_the_roi_points() -> None:
    landmarks = torch.tensor(_face_landmarks())[None]
    # AU6: the eye means moved down by the inter-ocular distance |lmk42 - lmk39| = 30.
    for aus, expected in (((1,), [(100.0, 80.0), (152.0, 84.0)]),
                          ((6,), [(88.0, 130.0), (168.0, 130.0)])):
        masks, centres = roi_masks(landmarks, aus, 256, 21.0, 2, np.random.default_rng(0))
        np.testing.assert_allclose(sorted(map(tuple, centres[0].tolist())), sorted(expected),
                                   atol=1e-4)
        # Two 21x21 squares, |x - cx| < 10.5 and |y - cy| < 10.5 on the pixel grid, by hand.
        want = np.zeros((256, 256), bool)
        grid = np.arange(256)
        for cx, cy in expected:
            want |= (np.abs(grid - cy) < 10.5)[:, None] & (np.abs(grid - cx) < 10.5)[None, :]
        np.testing.assert_array_equal(masks[0, 0].numpy().astype(bool), want)
    # One square on a 64-px image: centred on p * 64 / 256, side 20 * 64 / 256 = 5 pixels.
    masks, centres = roi_masks(landmarks, (1,), 64, 20.0, 1, np.random.default_rng(3))
    ys, xs = np.nonzero(masks[0, 0].numpy())
    assert (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (5, 5)
    assert (xs.mean(), ys.mean()) == pytest.approx(tuple(centres[0, 0].tolist()), abs=0.5)
    assert tuple(centres[0, 0].tolist()) in {(25.0, 20.0), (38.0, 21.0)}


def test_mask_points_are_the_distinct_rois_drawn_by_the_generator() -> None:
    # AUs 12, 14 and 15 share the mouth corners: two distinct points, not six.
    assert distinct_roi_indices((12, 14, 15)).tolist() == [0, 1]
    landmarks = torch.tensor(_face_landmarks())[None].repeat(3, 1, 1)
    _, centres = roi_masks(landmarks, (12, 14, 15), 256, 10.0, 5, np.random.default_rng(0))
    assert centres.shape == (3, 2, 2)
    for row in centres.tolist():
        assert sorted(map(tuple, row)) == [(96.0, 180.0), (160.0, 180.0)]
    # Every distinct ROI of the BP4D set gets drawn; the same seed draws the same masks.
    aus = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
    many = torch.tensor(_face_landmarks(), dtype=torch.float32)[None].repeat(200, 1, 1)
    _, centres = roi_masks(many, aus, 256, 10.0, 1, np.random.default_rng(1))
    all_points = roi_points(many[:1], aus).reshape(-1, 2)[distinct_roi_indices(aus)]
    assert {tuple(p) for p in centres[:, 0].tolist()} == {tuple(p) for p in all_points.tolist()}
    again = roi_masks(many, aus, 256, 10.0, 1, np.random.default_rng(1))[1]
    assert torch.equal(again, centres)


def test_inpainting_loss_counts_only_masked_pixels() -> None:
    original = torch.zeros(1, 3, 4, 4)
    masks = torch.zeros(1, 1, 4, 4)
    masks[..., :2, :2] = 1
    reconstruction = torch.full((1, 3, 8, 8), 5.0)  # resized (area) to 4x4: still 5
    reconstruction[..., 4:, 4:] = 100.0  # outside the mask: ignored
    assert float(masked_l1(reconstruction, original, masks)) == pytest.approx(5.0)


# -- flow targets -------------------------------------------------------------------------------

def _texture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (256 + 16, 256 + 16, 3)).astype(np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


def _shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The 256x256 window of `image` (8-px margin) whose content moved by (+dx, +dy)."""
    return np.ascontiguousarray(image[8 - dy: 8 - dy + 256, 8 - dx: 8 - dx + 256])


def test_flow_target_sign_and_scale_on_a_known_shift() -> None:
    texture = _texture()
    first = _shifted(texture, 0, 0)
    for size in (128, 32):
        interior = slice(size // 8, -size // 8)
        right = flow_target(first, _shifted(texture, 3, 0), size)
        assert right.shape == (2, size, size) and right.dtype == np.float32
        # Content moved 3 px right on the 256-px crop: +3 * size / 256 heatmap pixels in x.
        assert float(np.median(right[0, interior, interior])) == pytest.approx(
            3 * size / 256, rel=0.05)
        assert abs(float(np.median(right[1, interior, interior]))) < 0.02 * size / 32
        up = flow_target(first, _shifted(texture, 0, -2), size)
        assert float(np.median(up[1, interior, interior])) == pytest.approx(
            -2 * size / 256, rel=0.05)
    still = flow_target(first, first, 32)
    assert np.abs(still).max() < 0.05


def test_endpoint_error_is_the_mean_vector_distance() -> None:
    predicted = torch.zeros(2, 2, 3, 3)
    target = torch.zeros(2, 2, 3, 3)
    target[0, 0], target[0, 1] = 3.0, 4.0  # distance 5 on half the pixels, 0 elsewhere
    assert float(endpoint_error(predicted, target, eps=0.0)) == pytest.approx(2.5)


def test_frame_pairs_come_from_timestamps() -> None:
    times = np.arange(10) / 25.0  # 25 fps
    partners = flow_partners(["a"] * 10, times, gap=0.1)
    # 0.1 s after frame i lies between frames i+2 and i+3 (0.08, 0.12): the earlier wins.
    assert partners.tolist() == [2, 3, 4, 5, 6, 7, 8, 9, -1, -1]
    # Frames sampled at 5 fps (0.2 s apart) have no partner 0.1 s later ...
    assert (flow_partners(["a"] * 5, np.arange(5) * 0.2, 0.1) == -1).all()
    # ... but do 0.2 s later; videos never mix and unknown times pair with nothing.
    mixed = flow_partners(["a", "b", "a", "b", "a"], np.array([0, 0, 0.2, 0.2, np.nan]), 0.2)
    assert mixed.tolist() == [2, 3, -1, -1, -1]


# -- real frames ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """The first frames of vox_talking.mp4 as a short 25 fps video."""
    vox = shared_path("media", "vox_talking.mp4")
    path = tmp_path_factory.mktemp("clip") / "talk.mp4"
    frames = [f.image for f, _ in zip(read_frames(vox), range(CLIP_FRAMES), strict=False)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 256, 256, "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def data_root(clip: Path, tmp_path_factory) -> Path:
    """ROOT/TALK: the clip preprocessed (aligned frames + videos.json) and a label CSV of its
    frames (AUs 1, 12, 25, a fixed pattern)."""
    root = tmp_path_factory.mktemp("data")
    report = preprocess([clip], root / "TALK")
    assert report.written == CLIP_FRAMES
    rows = ["image_path," + ",".join(f"au{a}" for a in AUS)]
    for i in range(CLIP_FRAMES):
        labels = [(i + k) % 2 for k in range(len(AUS))]
        rows.append(f"TALK/aligned_images/talk/{i:06d}.jpg," + ",".join(map(str, labels)))
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root


def _options(root: Path, out: Path, **overrides) -> TrainOptions:
    csv = str(root / "train.csv")
    base = dict(dataset="custom", data=str(root), out=str(out), train_csv=csv, val_csv=csv,
                preset="tiny", lr=1e-3, weight_decay=0.0, grad_clip=1.0, batch_size=4,
                epochs=2, iterations=3, seed=0, num_workers=0, validate=False,
                precision="fp32", device="cpu", progress=False, log_every=1)
    base.update(overrides)
    return TrainOptions(**base)


def test_preprocess_records_the_frame_rate_and_frames_pair_up(data_root: Path,
                                                              monkeypatch) -> None:
    folder = data_root / "TALK"
    assert read_videos(folder) == {"talk": {"fps": 25.0, "source": "talk.mp4"}}
    assert split_sources([folder / "aligned_images"]) == ([], [folder])
    monkeypatch.chdir(data_root)  # a relative folder works from anywhere once loaded
    frames = load_frames([Path("TALK")], DataIssues(), flow_gap=0.1, show_progress=False)
    assert len(frames) == CLIP_FRAMES and all(f.is_absolute() for f in frames.files)
    monkeypatch.undo()
    # 25 fps: frame i pairs with frame i + 2 (0.08 s; 0.12 s is as close, and later).
    expected = [i + 2 if i + 2 < CLIP_FRAMES - 1 else -1 for i in range(CLIP_FRAMES)]
    expected[CLIP_FRAMES - 3] = CLIP_FRAMES - 1  # 0.08 s later is the last frame
    assert frames.partners.tolist() == expected
    assert frames.usable(pairs=True).tolist() == [i for i, p in enumerate(expected) if p >= 0]
    # Without videos.json the frame rate must be given.
    (folder / "videos.json").rename(folder / "videos.json.bak")
    try:
        with pytest.raises(UserError, match="--unlabeled-fps"):
            load_frames([folder], DataIssues(), flow_gap=0.1, show_progress=False)
        assert load_frames([folder], DataIssues(), flow_gap=0.1, fps_override=25.0,
                           show_progress=False).partners.tolist() == expected
        # Inpainting alone needs no timing.
        assert len(load_frames([folder], DataIssues(), flow_gap=None, show_progress=False)) == 12
    finally:
        (folder / "videos.json.bak").rename(folder / "videos.json")
    with pytest.raises(UserError, match="no two frames of a video are about 2 s apart"):
        load_frames([folder], DataIssues(), flow_gap=2.0, show_progress=False)


def test_bad_aux_options_are_one_line_errors(data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--aux needs unlabeled data"):
        _options(data_root, tmp_path, aux="flow")
    with pytest.raises(UserError, match="add --aux"):
        _options(data_root, tmp_path, unlabeled=(str(data_root),))
    with pytest.raises(UserError, match="not 'optical'"):
        _options(data_root, tmp_path, aux="inpaint,optical", unlabeled=(str(data_root),))
    assert _options(data_root, tmp_path, aux=" flow , inpaint", unlabeled=[str(data_root)]
                    ).aux == "inpaint,flow"
    with pytest.raises(UserError, match="no aligned_images/ folder"):
        split_sources([tmp_path])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="not a video file"):
        split_sources([tmp_path / "notes.txt"])


@pytest.mark.slow
def test_aux_losses_fall_when_training_from_a_video(clip: Path, data_root: Path,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--dataset", "custom", "--data", str(data_root), "--train-csv",
            str(data_root / "train.csv"), "--no-val", "--preset", "tiny", "--out", str(out),
            "--epochs", "1", "--iterations", "16", "--batch-size", "4", "--lr", "2e-3",
            "--grad-clip", "1", "--dropout", "0", "--num-workers", "0", "--device", "cpu",
            "--log-every", "1", "--unlabeled", str(clip), "--aux", "inpaint,flow",
            "--aux-weight-flow", "1", "--aux-batch", "4"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    # The video was aligned once into the run's cache, with its frame rate recorded.
    assert len(list((out / "unlabeled" / "aligned_images" / "talk").glob("*.jpg"))) == 12
    assert read_videos(out / "unlabeled")["talk"]["fps"] == 25.0
    start = metrics_records(out, "start")[0]
    assert start["aux"] == ["inpaint", "flow"] and start["unlabeled_frames"] == 10
    train_records = metrics_records(out, "train")
    assert len(train_records) == 16
    assert np.isfinite([r["loss"] for r in train_records]).all()
    for name in ("loss_inpaint", "loss_flow"):
        values = [r[name] for r in train_records]
        assert np.mean(values[-4:]) < 0.8 * np.mean(values[:4]), (name, values)
    # The head predicts more than "no motion" (whose error is the mean flow magnitude).
    frames = load_frames([out / "unlabeled"], DataIssues(), flow_gap=0.1, show_progress=False)
    still = np.mean([np.linalg.norm(flow_target(read_rgb(frames.files[i]),
                                                read_rgb(frames.files[frames.partners[i]]),
                                                32), axis=0).mean()
                     for i in frames.usable(pairs=True)])
    assert np.mean([r["loss_flow"] for r in train_records[-4:]]) < 0.9 * still
    # The FG-Net checkpoint loads as before; the flow head is its own file.
    loaded = load_model(out / "last.safetensors")
    assert loaded.aus == AUS and not any("flow" in k for k in loaded.model.state_dict())
    head = load_flow_head(out / "flow_head.safetensors")
    hidden = FGNet(TINY).eval().trace(torch.zeros(1, 3, 64, 64)).hidden
    assert head(hidden).shape == (1, 2, 32, 32)


def test_resume_with_aux_continues_exactly(data_root: Path, tmp_path: Path) -> None:
    options = dict(aux="inpaint,flow", unlabeled=(str(data_root / "TALK"),), aux_batch=3,
                   batch_size=2, epochs=2, iterations=2)
    straight = train(_options(data_root, tmp_path / "a", **options))
    assert straight.finished and straight.step == 4
    stopped = train(_options(data_root, tmp_path / "b", max_iterations=3, **options))
    assert not stopped.finished and stopped.step == 3
    resumed = train(_options(data_root, tmp_path / "b", resume=True, **options))
    assert resumed.finished and resumed.step == 4
    for name in ("last.safetensors", "flow_head.safetensors"):
        a, b = load_file(tmp_path / "a" / name), load_file(tmp_path / "b" / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    keys = ("step", "loss", "loss_inpaint", "loss_flow", "grad_norm")
    a_log = [[r[k] for k in keys] for r in metrics_records(tmp_path / "a", "train")]
    b_log = [[r[k] for k in keys] for r in metrics_records(tmp_path / "b", "train")]
    assert a_log == b_log and len(a_log) == 4


def test_supervised_path_is_unchanged_with_aux_off(data_root: Path, tmp_path: Path) -> None:
    """A run without --aux logs exactly the losses of the release's recipe computed here
    step by step (MSE on the heatmap targets, AdamW after clipping, same data order)."""
    options = _options(data_root, tmp_path / "run", dropout=0.1)
    train(options)
    records = metrics_records(tmp_path / "run", "train")
    assert "loss_inpaint" not in records[0] and "aux" not in metrics_records(tmp_path / "run",
                                                                       "start")[0]
    assert not (tmp_path / "run" / "flow_head.safetensors").exists()

    seed_everything(options.seed)
    table = read_labels(options.train_csv, options.data, "custom", DataIssues())
    model, _ = initial_model(options, AUS)
    optimizer = make_optimizer(freeze_unreached(model), options, torch.device("cpu"))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    seed_everything(options.seed)
    dataset = FrameDataset(table, TINY.image_size)
    expected = []
    for epoch in range(options.epochs):
        model.train()
        sampler = EpochBatchSampler(len(dataset), options.batch_size, options.iterations,
                                    options.seed, epoch)
        for indices in sampler:
            batch = collate_frames([dataset[i] for i in indices])
            targets = heatmap_targets_torch(batch.landmarks.float(), batch.labels, AUS,
                                            size=TINY.heatmap_size, sigma=options.sigma)
            loss = F.mse_loss(model(batch.images)[:, :3].float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, options.grad_clip)
            optimizer.step()
            expected.append([float(loss.detach()), float(grad_norm)])
    assert [[r["loss"], r["grad_norm"]] for r in records] == expected


def test_hidden_map_hook_and_rgb_parameters() -> None:
    model = random_model(TINY, seed=0).eval()
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    trace = model.trace(images)
    assert trace.hidden.shape == (2, TINY.head_width, 32, 32)
    assert torch.equal(model.interpreter.head(trace.hidden), trace.heatmaps)
    assert torch.equal(model(images), trace.heatmaps)
    assert torch.equal(model.reconstruct(images), model.trace(images, rgb=True).image)
    # With the RGB image as an output, every parameter trains (the RGB branch included).
    trainable = freeze_unreached(model, rgb=True)
    assert len(trainable) == len(list(model.parameters())) > len(freeze_unreached(model))


# -- comparing runs -------------------------------------------------------------------------------

def test_evaluate_compares_two_checkpoints_side_by_side(data_root: Path, tmp_path: Path) -> None:
    paths = []
    for name, seed in (("a", 0), ("b", 1)):
        path = tmp_path / name / "best.safetensors"
        path.parent.mkdir()
        save_converted(path, random_model(TINY, seed=seed), "custom", AUS)
        paths.append(str(path))
    assert run_labels(paths) == ["a/best", "b/best"]
    args = ["evaluate", "--dataset", "custom", "--data", str(data_root), "--csv",
            str(data_root / "train.csv"), "--device", "cpu", "--num-workers", "0",
            "--json", str(tmp_path / "both.json")]
    result = CliRunner().invoke(main, args + ["--weights", paths[0], "--weights", paths[1]])
    assert result.exit_code == 0, result.output
    runs = json.loads((tmp_path / "both.json").read_text())["runs"]
    assert [r["weights"] for r in runs] == paths
    single = CliRunner().invoke(main, args[:-1] + [str(tmp_path / "one.json"),
                                                   "--weights", paths[1]])
    assert single.exit_code == 0, single.output
    one = json.loads((tmp_path / "one.json").read_text())
    assert one["sets"][0]["per_au"] == runs[1]["sets"][0]["per_au"]
    f1 = [r["sets"][0]["mean_f1"] for r in runs]
    assert "difference" in result.output and f"{f1[1] - f1[0]:+.1f}" in result.output
    table = comparison_table(runs)
    assert [c.header for c in table.columns] == ["AU", "a/best", "b/best", "difference"]
    assert table.row_count == len(AUS)
