"""Training: data checks, learning a small real-face set, bit-exact resume, DDP on gloo."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import MISSING, fields
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from fgnet_video.aus import BP4D_AUS, DISFA_AUS
from fgnet_video.cli import main
from fgnet_video.cli.evaluate import evaluate as evaluate_command
from fgnet_video.cli.train import train as train_command
from fgnet_video.errors import UserError
from fgnet_video.model.config import TINY
from fgnet_video.model.fgnet import FGNet
from fgnet_video.settings import setting_default, setting_help
from fgnet_video.train.data import (
    DataIssues,
    DlibLandmarker,
    FrameDataset,
    check_frames,
    collate_frames,
    landmark_file,
    read_labels,
)
from fgnet_video.train.evaluate import evaluate_weights
from fgnet_video.train.loop import train
from fgnet_video.train.model_init import (
    freeze_unreached,
    initial_model,
    output_conv,
    remap_output_channels,
)
from fgnet_video.train.options import EvaluateOptions, TrainOptions
from fgnet_video.train.sampler import EpochBatchSampler
from fgnet_video.weights.checkpoints import load_model, save_converted

from .conftest import STOP_WITHIN_S, metrics_records, shared_path, stopped_by_sigterm

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"
AUS = (1, 12, 25)
# Labels of each identity (columns AUS): every AU is active for some and inactive for others.
IDENTITY_LABELS = [(1, 0, 1), (0, 1, 1), (1, 1, 0), (0, 0, 1), (1, 0, 0)]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Training a tiny model is many small ops: one thread avoids oversubscribing a shared CI
    runner, where extra threads cost more in synchronisation than they gain."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _require_reference() -> None:
    shared_path("reference", "ffhq_align")


def _faces() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, 256x256 RGB, 68x2 landmarks) of the five reference aligned faces."""
    landmarker = DlibLandmarker()
    faces = []
    with np.load(REFERENCE / "heatmap_targets" / "expected.npz") as expected:
        known = expected["landmarks_256"]
    for i, name in enumerate(("bp4d_aligned", "ffhq_aligned")):
        rgb = np.asarray(Image.open(REFERENCE / "fgnet_forward" / f"{name}.jpg").convert("RGB"))
        faces.append((name, rgb, known[i]))
    for path in sorted((REFERENCE / "ffhq_align").glob("*_aligned.png")):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        faces.append((path.stem, rgb, landmarker(rgb)))
    return faces


def _variants(rgb: np.ndarray, landmarks: np.ndarray):
    """The face, its mirror image and two shifted copies (edge-padded), with landmarks."""
    yield "orig", rgb, landmarks
    yield "flip", rgb[:, ::-1], np.stack([255.0 - landmarks[:, 0], landmarks[:, 1]], 1)
    for name, dx, dy in (("right", 8, 0), ("down", -6, 8)):
        padded = np.pad(rgb, ((8, 8), (8, 8), (0, 0)), mode="edge")
        shifted = padded[8 - dy: 8 - dy + 256, 8 - dx: 8 - dx + 256]
        yield name, shifted, landmarks + np.array([dx, dy])


@pytest.fixture(scope="module")
def face_root(tmp_path_factory) -> Path:
    """ROOT/FACES/{aligned_images,aligned_landmarks}/<face>/<variant> + labels/train.csv."""
    _require_reference()
    root = tmp_path_factory.mktemp("faces")
    rows = ["image_path," + ",".join(f"au{a}" for a in AUS)]
    for (name, rgb, landmarks), labels in zip(_faces(), IDENTITY_LABELS, strict=True):
        for variant, image, points in _variants(rgb, landmarks):
            rel = f"FACES/aligned_images/{name}/{variant}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(image)).save(root / rel)
            lm_path = landmark_file(root / rel)
            lm_path.parent.mkdir(parents=True, exist_ok=True)
            np.save(lm_path, points.astype(np.float64))
            rows.append(rel + "," + ",".join(map(str, labels)))
    (root / "FACES" / "labels").mkdir()
    (root / "FACES" / "labels" / "train.csv").write_text("\n".join(rows) + "\n")
    return root


def _options(root: Path, out: Path, **overrides) -> TrainOptions:
    csv = str(root / "FACES" / "labels" / "train.csv")
    base = dict(dataset="custom", data=str(root), out=str(out), train_csv=csv, val_csv=csv,
                preset="tiny", lr=1e-3, weight_decay=0.0, grad_clip=1.0, batch_size=8,
                epochs=2, iterations=6, seed=0, num_workers=0,
                precision="fp32", device="cpu", progress=False, log_every=5)
    base.update(overrides)
    return TrainOptions(**base)


# -- learning ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_tiny_model_learns_real_faces(face_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # Seeds 0, 1 and 2 all reach F1 100 by the 6th epoch with these settings.
    summary = train(_options(face_root, out, epochs=8, iterations=8, batch_size=4, lr=5e-4,
                             dropout=0.0, num_workers=1))
    assert summary.finished and summary.step == 64
    vals = metrics_records(out, "val")
    assert [v["epoch"] for v in vals] == list(range(1, 9))  # counted from 1
    assert vals[0]["mean_f1"] < 100.0 and summary.best_f1 == 100.0
    losses = [(r["epoch"], r["loss"]) for r in metrics_records(out, "train")]
    last_epoch = [loss for epoch, loss in losses if epoch == 8]
    assert np.mean(last_epoch) < 0.5 * losses[0][1]
    # The best checkpoint scores 100 again through the evaluation path.
    report = evaluate_weights(str(out / "best.safetensors"), "custom", str(face_root),
                              csvs=[str(face_root / "FACES" / "labels" / "train.csv")],
                              device="cpu", num_workers=0, show_progress=False)
    assert report["aus"] == list(AUS)
    assert report["sets"][0]["mean_f1"] == 100.0
    assert report["sets"][0]["n_frames"] == 20
    loaded = load_model(out / "best.safetensors")
    assert loaded.dataset == "custom" and loaded.aus == AUS
    assert loaded.metadata["training"]["val_f1"] == 100.0


def test_tiny_run_is_quiet_counts_epochs_from_1_and_writes_shareable_files(
        face_root: Path, tmp_path: Path, monkeypatch, recwarn) -> None:
    """Training and evaluating wrap no read-only array in a tensor (torch's 'not writable'
    warning, which it gives once per process, so the arrays are checked too); the summary
    line and metrics.jsonl name the same best epoch, counted from 1; every file of the run
    follows the umask."""
    from_numpy, read_only = torch.from_numpy, []

    def checked_from_numpy(array):
        if not array.flags.writeable:
            read_only.append(array.shape)
        return from_numpy(array)

    monkeypatch.setattr(torch, "from_numpy", checked_from_numpy)
    out = tmp_path / "run"
    umask = os.umask(0o022)
    try:
        summary = train(_options(face_root, out, epochs=3, iterations=1, batch_size=2,
                                 val_subset=4))
    finally:
        os.umask(umask)
    report = evaluate_weights(str(out / "best.safetensors"), "custom", str(face_root),
                              csvs=[str(face_root / "FACES" / "labels" / "train.csv")],
                              device="cpu", num_workers=0, show_progress=False)
    assert report["sets"][0]["n_frames"] == 20
    assert read_only == []
    assert not [w for w in recwarn if "not writable" in str(w.message)]

    vals = metrics_records(out, "val")
    assert [v["epoch"] for v in vals] == [1, 2, 3]
    (done,) = metrics_records(out, "done")
    best = [v["epoch"] for v in vals if v["best"]][-1]
    assert done["best_epoch"] == summary.best_epoch == best
    assert f"after epoch {best};" in summary.line()
    assert {r["epoch"] for r in metrics_records(out, "train")} == {1, 2, 3}
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in out.iterdir()}
    assert modes == dict.fromkeys(["best.safetensors", "last.safetensors", "metrics.jsonl",
                                   "resume.pt", "run.json"], "0o644")


# -- resume --------------------------------------------------------------------------------------

def test_resume_is_bit_exact(face_root: Path, tmp_path: Path) -> None:
    options = dict(epochs=2, iterations=3, batch_size=2, val_subset=2, log_every=1,
                   features="early,middle")
    straight = train(_options(face_root, tmp_path / "a", **options))
    assert straight.finished and straight.step == 6
    first = train(_options(face_root, tmp_path / "b", max_iterations=4, **options))
    assert not first.finished and (first.epoch, first.iteration) == (1, 1)
    assert "--resume" in first.line()
    with pytest.raises(UserError, match="already holds a run"):
        train(_options(face_root, tmp_path / "b", **options))
    resumed = train(_options(face_root, tmp_path / "b", resume=True, **options))
    assert resumed.finished and resumed.step == 6
    a = load_file(tmp_path / "a" / "last.safetensors")
    b = load_file(tmp_path / "b" / "last.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [r["step"] for r in metrics_records(tmp_path / "b", "train")]
    assert steps == [1, 2, 3, 4, 5, 6]  # the log holds each step once
    assert len(metrics_records(tmp_path / "b", "resume")) == 1


def test_resume_refuses_a_changed_recipe(face_root: Path, tmp_path: Path) -> None:
    from fgnet_video.train.runlog import read_run_options

    train(_options(face_root, tmp_path, epochs=1, iterations=1, validate=False,
                   max_iterations=0))
    stored = read_run_options(tmp_path)
    with pytest.raises(UserError, match="--lr .* differs from the run being resumed"):
        stored.resumed_with({"lr": 1.0})
    assert stored.resumed_with({"num_workers": 3, "out": "x"}).num_workers == 3


def test_sampler_order_is_a_function_of_seed_epoch_and_rank() -> None:
    whole = list(EpochBatchSampler(7, 4, 5, seed=1, epoch=2))
    assert len(whole) == 5 and all(len(b) == 4 for b in whole)
    assert list(EpochBatchSampler(7, 4, 5, seed=1, epoch=2, start=3)) == whole[3:]
    # Each permutation of the 7 frames is used in full before the next starts.
    flat = [i for batch in whole for i in batch]
    assert sorted(flat[:7]) == list(range(7)) and sorted(flat[7:14]) == list(range(7))
    ranks = [list(EpochBatchSampler(7, 4, 5, 1, 2, rank=r, world_size=2)) for r in (0, 1)]
    for i, batch in enumerate(whole):
        assert sorted(ranks[0][i] + ranks[1][i]) == sorted(batch)
    assert list(EpochBatchSampler(7, 4, 5, seed=1, epoch=3)) != whole
    with pytest.raises(UserError, match="divisible"):
        EpochBatchSampler(7, 3, 5, 0, 0, world_size=2)


# -- fine-tuning ---------------------------------------------------------------------------------

def test_fine_tuning_keeps_each_aus_output_channel(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = FGNet(TINY)
    before = output_conv(model).weight.detach().clone()
    remap_output_channels(model, BP4D_AUS, DISFA_AUS)
    after = output_conv(model).weight.detach()
    for k, au in enumerate(DISFA_AUS):
        if au in BP4D_AUS:
            assert torch.equal(after[k], before[BP4D_AUS.index(au)])
    # Still a permutation of the original channels.
    assert sorted(after.flatten().tolist()) == sorted(before.flatten().tolist())
    # Through the run's initialisation: a BP4D checkpoint fine-tuned on AUs (1, 12, 25).
    path = save_converted(tmp_path / "bp4d.safetensors", FGNet(TINY), "bp4d", BP4D_AUS)
    original = output_conv(load_model(path).model).bias.detach()
    options = TrainOptions("custom", str(tmp_path), str(tmp_path / "o"), weights=str(path),
                           train_csv="x.csv", dropout=0.3)
    model, sources = initial_model(options, AUS)
    bias = output_conv(model).bias.detach()
    # AU1 and AU12 keep their channels (0 and 6); AU25 takes the first channel left over (1).
    assert [float(b) for b in bias[:3]] == [float(original[c]) for c in (0, 6, 1)]
    assert sources["init"] == "weights"
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.3}


def test_frozen_parameters_are_exactly_those_without_gradient() -> None:
    torch.manual_seed(0)
    model = FGNet(TINY.with_features("early,middle")).eval()
    trainable = freeze_unreached(model)
    model(torch.rand(1, 3, 64, 64)).sum().backward()
    with_grad = [p for p in model.parameters() if p.grad is not None]
    assert len(with_grad) == len(trainable) < len(list(model.parameters()))
    assert all(a is b for a, b in zip(with_grad, trainable, strict=True))


# -- bad data ------------------------------------------------------------------------------------

@pytest.fixture()
def small_root(tmp_path: Path) -> Path:
    """Two frames of one real face without landmark files, a missing image, a bad label and
    an unreadable image file."""
    _require_reference()
    images = tmp_path / "BP4D" / "aligned_images" / "F001" / "T1"
    images.mkdir(parents=True)
    face = Image.open(REFERENCE / "fgnet_forward" / "bp4d_aligned.jpg")
    face.save(images / "0001.png")
    face.save(images / "0002.png")
    (images / "0004.jpg").write_bytes(b"not an image")
    header = "image_path," + ",".join(f"au{a}" for a in BP4D_AUS)
    ones = ",".join(["1"] * 12)
    rows = [
        header,
        f"BP4D/aligned_images/F001/T1/0001.png,{ones}",
        f"BP4D/aligned_images/F001/T1/0002.png,{ones.replace('1', '0', 3)}",
        f"BP4D/aligned_images/F001/T1/0003.png,{ones}",
        f"BP4D/aligned_images/F001/T1/0005.png,{ones[:-1]}x",
        f"BP4D/aligned_images/F001/T1/0004.jpg,{ones}",
    ]
    labels = tmp_path / "BP4D" / "labels" / "0"
    labels.mkdir(parents=True)
    (labels / "train.csv").write_text("\n".join(rows) + "\n")
    # 0004.jpg gets landmarks so that only its decoding fails (in the data loader).
    lm = landmark_file(images / "0004.jpg")
    lm.parent.mkdir(parents=True, exist_ok=True)
    np.save(lm, np.full((68, 2), 128.0))
    return tmp_path


def test_bad_data_is_reported_with_its_path(small_root: Path) -> None:
    csv = small_root / "BP4D" / "labels" / "0" / "train.csv"
    with pytest.raises(UserError, match=r"0005.png: bad label 'x' for AU24 \(row 5"):
        read_labels(csv, small_root, "bp4d", DataIssues("fail"))
    issues = DataIssues("skip")
    table = read_labels(csv, small_root, "bp4d", issues)
    assert len(table) == 4 and list(issues.found) == ["BP4D/aligned_images/F001/T1/0005.png"]
    table = check_frames(table, issues, show_progress=False, workers=2)
    assert "BP4D/aligned_images/F001/T1/0003.png" in issues.found
    assert issues.found["BP4D/aligned_images/F001/T1/0003.png"] == "image file not found"
    assert len(table) == 3
    # Missing landmarks were computed with dlib and cached: the release's own landmarks.
    computed = np.load(small_root / "BP4D/aligned_landmarks/F001/T1/0001.npy")
    with np.load(REFERENCE / "heatmap_targets" / "expected.npz") as expected:
        np.testing.assert_array_equal(computed, expected["landmarks_256"][0])
    assert (small_root / "BP4D/aligned_landmarks/F001/T1/0002.npy").is_file()
    # The unreadable image is reported by the dataset (as it would be in a worker).
    batch = collate_frames([FrameDataset(table, 64)[i] for i in range(len(table))])
    assert len(batch) == 2 and batch.images.shape == (2, 3, 64, 64)
    assert batch.bad[0][0] == "BP4D/aligned_images/F001/T1/0004.jpg"
    assert batch.bad[0][1].startswith("unreadable image")
    np.testing.assert_array_equal(batch.labels[1].numpy(), [0.0] * 3 + [1.0] * 9)
    with pytest.raises(UserError, match="image file not found"):
        check_frames(read_labels(csv, small_root, "bp4d", DataIssues("skip")),
                     DataIssues("fail"), show_progress=False)


def test_train_cli_reports_bad_data_in_one_line(small_root: Path, tmp_path: Path) -> None:
    args = ["train", "--dataset", "bp4d", "--data", str(small_root), "--preset", "tiny",
            "--out", str(tmp_path / "out"), "--no-val", "--epochs", "1", "--iterations", "2",
            "--batch-size", "4", "--num-workers", "1", "--device", "cpu"]
    failed = CliRunner().invoke(main, args)
    assert failed.exit_code == 1
    assert failed.output.strip().splitlines() == [
        "fgnet-video: error: bad data: BP4D/aligned_images/F001/T1/0005.png: bad label 'x' for"
        f" AU24 (row 5 of {small_root / 'BP4D/labels/0/train.csv'}) (use --on-bad-data skip"
        " to skip it)"
    ]
    stopped = CliRunner().invoke(main, args + ["--on-bad-data", "skip", "--max-iterations", "1"])
    assert stopped.exit_code == 0, stopped.output
    assert "skipped 3 bad frame(s); first: BP4D/aligned_images/F001/T1/0005.png" in stopped.output
    assert "stopped after step 1" in stopped.output
    resumed = CliRunner().invoke(main, ["train", "--resume", "--out", str(tmp_path / "out"),
                                        "--num-workers", "0"])
    assert resumed.exit_code == 0, resumed.output
    assert "skipped 3 bad frame(s)" in resumed.output
    assert "finished after step 2" in resumed.output
    assert (tmp_path / "out" / "last.safetensors").is_file()
    conflict = CliRunner().invoke(main, ["train", "--resume", "--out", str(tmp_path / "out"),
                                         "--epochs", "3"])
    assert conflict.exit_code == 1
    assert "--epochs 3 differs from the run being resumed (1)" in conflict.output


def test_label_columns_are_found_by_au_number(tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("image_path,AU26,au_1,AU02,au4,au6,au9,au12,au25,note\n"
                   "a.png,5,1,2,0,3,0,4,1,x\nb.png,0,2,0,0,0,0,0,0,y\n")
    table = read_labels(csv, tmp_path, "disfa", DataIssues())
    # DISFA order 1, 2, 4, 6, 9, 12, 25, 26; intensity >= 2 is present.
    assert table.aus == DISFA_AUS
    assert table.labels.tolist() == [[0, 1, 0, 1, 0, 1, 0, 1], [1, 0, 0, 0, 0, 0, 0, 0]]
    custom = read_labels(csv, tmp_path, "custom", DataIssues(), threshold=3)
    assert custom.aus == (26, 1, 2, 4, 6, 9, 12, 25)
    assert custom.labels[0].tolist() == [1, 0, 0, 0, 1, 0, 1, 0]


def test_subset_is_drawn_reproducibly_by_seed(tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("image_path,au1\n" + "".join(f"{i}.png,{i % 2}\n" for i in range(50)))
    table = read_labels(csv, tmp_path, "custom", DataIssues())
    a, b, c = table.subset(10, seed=0), table.subset(10, seed=0), table.subset(10, seed=1)
    assert a.paths == b.paths and a.paths != c.paths and len(set(a.paths)) == 10
    assert all(int(p.split(".")[0]) % 2 == label for p, label in zip(a.paths, a.labels[:, 0],
                                                                     strict=True))
    with pytest.raises(UserError, match="--subset must be between 1 and 50"):
        table.subset(51, seed=0)


def test_custom_aus_without_roi_are_refused(tmp_path: Path) -> None:
    csv = tmp_path / "labels.csv"
    csv.write_text("image_path,au1,au5\nx.png,1,0\n")
    with pytest.raises(UserError, match="no ROI definition for AU 5"):
        read_labels(csv, tmp_path, "custom", DataIssues())


# -- distributed ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_ddp_two_processes_on_gloo(face_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    csv = str(face_root / "FACES" / "labels" / "train.csv")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "fgnet_video", "train", "--dataset", "custom", "--data", str(face_root),
        "--train-csv", csv, "--val-csv", csv, "--preset", "tiny", "--features", "early,middle",
        "--out", str(out), "--epochs", "1", "--iterations", "3", "--batch-size", "4",
        "--num-workers", "0", "--device", "cpu", "--log-every", "1",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "best.safetensors", "last.safetensors", "metrics.jsonl", "resume.pt", "run.json"]
    start = metrics_records(out, "start")[0]
    assert start["world_size"] == 2
    val = metrics_records(out, "val")[0]
    assert val["frames"] == 20  # counts summed over both ranks' shards
    assert len(metrics_records(out, "train")) == 3
    # The reduced F1 is the F1 of the saved model on the whole validation set.
    report = evaluate_weights(str(out / "last.safetensors"), "custom", str(face_root),
                              csvs=[csv], device="cpu", num_workers=0, show_progress=False)
    assert report["sets"][0]["mean_f1"] == pytest.approx(val["mean_f1"], abs=1e-9)



# -- options and the command line ----------------------------------------------------------------

@pytest.mark.parametrize(("command", "cls", "own"), [
    (train_command, TrainOptions, set()),
    (evaluate_command, EvaluateOptions, {"weights", "dataset", "data", "json_path"}),
])
def test_cli_options_take_default_and_help_from_the_options_dataclass(command, cls,
                                                                      own) -> None:
    options = [p for p in command.params if isinstance(p, click.Option) and p.name != "help"]
    names = {f.name for f in fields(cls)}
    for option in options:
        if option.name in own:  # the command's own arguments: required, or output paths
            continue
        assert option.default is None, option.name
        assert option.name in names, option.name
        assert option.help.startswith(setting_help(cls, option.name)), option.name
        default = setting_default(cls, option.name)
        if default not in (MISSING, None, "", ()):
            assert "[default: " in option.help, option.name
    # Every TrainOptions field but the library's progress switch is an option of `train`.
    if cls is TrainOptions:
        assert names - {o.name for o in options} == {"progress"}


def test_train_cli_builds_the_libraries_options(tmp_path: Path, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr("fgnet_video.train.loop.train", calls.append)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["train", "--dataset", "bp4d", "--data", "data",
                                       "--out", "run", "--preset", "tiny"])
    assert result.exit_code != 0  # the spy returns no summary to print
    assert calls == [TrainOptions("bp4d", str(tmp_path.resolve() / "data"), "run",
                                  preset="tiny")]
    missing = CliRunner().invoke(main, ["train", "--out", "run", "--preset", "tiny"])
    assert missing.exit_code == 1
    assert "--dataset and --data are required" in missing.output


def test_paths_are_made_absolute_but_known_weights_names_kept(tmp_path: Path,
                                                              monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ck.safetensors").write_bytes(b"")
    here = tmp_path.resolve()
    named = TrainOptions("bp4d", "data", "run", weights="bp4d", aux="flow",
                         unlabeled=["clip.mp4"])
    assert (named.data, named.weights) == (str(here / "data"), "bp4d")
    assert named.unlabeled == (str(here / "clip.mp4"),)
    assert TrainOptions("bp4d", "data", "run", weights="ck.safetensors").weights == str(
        here / "ck.safetensors")
    # On resume the given paths are compared once absolute; offline is a runtime option.
    resumed = named.resumed_with({"data": "data", "weights": "bp4d", "offline": True})
    assert resumed.offline is True and resumed.resume
    with pytest.raises(UserError, match="--data .* differs from the run being resumed"):
        named.resumed_with({"data": "other"})


def test_train_weights_known_name_offline_is_one_line(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("FGNET_VIDEO_HOME", str(home))
    monkeypatch.setenv("FGNET_VIDEO_OFFLINE", "1")
    image = tmp_path / "X" / "aligned_images" / "0.png"
    image.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    landmarks = landmark_file(image)
    landmarks.parent.mkdir(parents=True)
    np.save(landmarks, np.full((68, 2), 128.0))
    csv = tmp_path / "labels.csv"
    csv.write_text("image_path,au1\nX/aligned_images/0.png,1\n")
    result = CliRunner().invoke(main, [
        "train", "--dataset", "custom", "--data", str(tmp_path), "--train-csv", str(csv),
        "--no-val", "--weights", "bp4d", "--out", str(tmp_path / "run"), "--device", "cpu",
        "--num-workers", "0"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert lines[0].startswith(f"fgnet-video: error: bp4d weights are not in {home}")
    assert "fgnet-video weights import" in lines[0]


@pytest.mark.slow
def test_sigterm_stops_training_within_seconds_and_saves_its_state(face_root: Path,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "run"
    csv = str(face_root / "FACES" / "labels" / "train.csv")
    args = ["train", "--dataset", "custom", "--data", str(face_root), "--out", str(out),
            "--train-csv", csv, "--no-val", "--preset", "tiny", "--batch-size", "2",
            "--epochs", "1", "--iterations", "100000", "--log-every", "1",
            "--num-workers", "0", "--device", "cpu", "--precision", "fp32"]

    def stepping() -> bool:
        return (out / "metrics.jsonl").is_file() and bool(metrics_records(out, "train"))

    code, seconds, err = stopped_by_sigterm(args, stepping, tmp_path / "stderr.txt")
    assert code == 0, err
    assert "stopped after step" in err, err
    assert seconds < STOP_WITHIN_S, f"stopped {seconds:.1f} s after SIGTERM"
    assert (out / "resume.pt").is_file() and metrics_records(out, "stop")
    assert not list(out.rglob(".*partial*"))
