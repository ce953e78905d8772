"""Known-weights cache and downloader, against a Google Drive stand-in on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import torch
from click.testing import CliRunner
from rich.console import Console

import fgnet_video.weights.download as download_module
from fgnet_video.cli import main
from fgnet_video.errors import UserError
from fgnet_video.model.config import TINY
from fgnet_video.model.init import random_model
from fgnet_video.weights.download import download, drive_url, partial_path, retry_delays
from fgnet_video.weights.store import KNOWN_WEIGHTS, PSP_FFHQ, load_weights, resolve_weights

BP4D_ID = KNOWN_WEIGHTS["bp4d"].model.drive_id
DISFA_ID = KNOWN_WEIGHTS["disfa"].model.drive_id
PAGE_TOKEN = "tok3n"
UUID = "8f1c-uuid"


class DriveStub:
    """Serves files by `?id=` like Google Drive: Range requests, an optional confirmation
    page (`form`: usercontent form with confirm+uuid; `link`: uc page with a confirm= link
    and a download_warning cookie; `cookie`: the cookie alone; `refuse`: a quota page), an
    optional transfer cut short after `cut_after` bytes (`cuts` times), optionally without a
    Content-Length (`no_length`: then the cut looks like the end of the file)."""

    def __init__(self, files: dict[str, bytes], page: str | None = None,
                 cut_after: int | None = None, cuts: int = 0, honour_range: bool = True,
                 no_length: bool = False):
        self.files, self.page, self.honour_range = files, page, honour_range
        self.no_length = no_length
        self.cut_after, self.cuts = cut_after, cuts
        self.requests: list[dict] = []

    def confirmed(self, query: dict, cookie: str) -> bool:
        if self.page == "form":
            return query.get("confirm") == "t" and query.get("uuid") == UUID
        if self.page in ("link", "cookie"):
            return query.get("confirm") == PAGE_TOKEN and "download_warning" in cookie
        return self.page is None

    def confirmation_page(self, file_id: str) -> tuple[bytes, dict]:
        if self.page == "form":
            body = (f'<html><head><title>Google Drive - Virus scan warning</title></head><body>'
                    f'<form id="download-form" action="/download" method="get">'
                    f'<input type="submit" value="Download anyway">'
                    f'<input type="hidden" name="id" value="{file_id}">'
                    f'<input type="hidden" name="export" value="download">'
                    f'<input type="hidden" name="confirm" value="t">'
                    f'<input type="hidden" name="uuid" value="{UUID}"></form></body></html>')
            return body.encode(), {}
        cookie = {"Set-Cookie": f"download_warning_13058876669334088843_{file_id}={PAGE_TOKEN}; "
                                "Path=/"}
        if self.page == "link":
            body = (f'<html><body><a id="uc-download-link" href="/uc?export=download&amp;'
                    f'confirm={PAGE_TOKEN}&amp;id={file_id}">Download anyway</a></body></html>')
            return body.encode(), cookie
        if self.page == "cookie":
            return b"<html><body>Google Drive can't scan this file.</body></html>", cookie
        return (b"<html><head><title>Google Drive - Quota exceeded</title></head>"
                b"<body>Too many users have viewed or downloaded this file recently.</body></html>",
                {})

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.path).query).items()}
        self.requests.append({"id": query.get("id"), "confirm": query.get("confirm"),
                              "range": request.headers.get("Range")})
        data = self.files.get(query.get("id", ""))
        if data is None:
            request.send_error(404)
            return
        if not self.confirmed(query, request.headers.get("Cookie", "")):
            body, headers = self.confirmation_page(query["id"])
            request.send_response(200)
            for key, value in {"Content-Type": "text/html; charset=utf-8", **headers}.items():
                request.send_header(key, value)
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)
            return
        start = 0
        wanted = request.headers.get("Range")
        if wanted and self.honour_range:
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                request.send_response(416)
                request.send_header("Content-Range", f"bytes */{len(data)}")
                request.send_header("Content-Length", "0")
                request.end_headers()
                return
        request.send_response(206 if start else 200)
        request.send_header("Content-Type", "application/octet-stream")
        if not self.no_length:
            request.send_header("Content-Length", str(len(data) - start))
        if start:
            request.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        request.end_headers()
        body = data[start:]
        if self.cuts > 0:
            self.cuts -= 1
            body = body[: self.cut_after]  # then the connection closes (HTTP/1.0)
        request.wfile.write(body)


@pytest.fixture()
def serve(monkeypatch, tmp_path):
    """serve(files, **stub_options) -> DriveStub, with FGNET_VIDEO_DRIVE_URL pointing at it
    and an empty FGNET_VIDEO_HOME."""
    servers = []

    def start(files: dict[str, bytes], **options) -> DriveStub:
        stub = DriveStub(files, **options)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                stub.handle(self)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        monkeypatch.setenv("FGNET_VIDEO_DRIVE_URL",
                           f"http://127.0.0.1:{server.server_address[1]}/download")
        return stub

    monkeypatch.setenv("FGNET_VIDEO_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FGNET_VIDEO_OFFLINE", raising=False)
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture(scope="module")
def release():
    """A tiny FG-Net and its bytes in the release layouts: (model, model.pth, encoder.pt)."""
    model = random_model(TINY, seed=3)
    parts = {p: getattr(model, p).state_dict() for p in ("interpreter", "g_all", "pspencoder")}
    psp = {f"encoder.{k}": v for k, v in model.pspencoder.state_dict().items()}
    psp |= {f"decoder.{k}": v for k, v in model.g_all.state_dict().items()}
    encoder = {"state_dict": psp, "latent_avg": model.latent_avg.clone(), "opts": {}}
    files = []
    for obj in (parts, encoder):
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        files.append(buffer.getvalue())
    return model, files[0], files[1]


def _release_files(release) -> dict[str, bytes]:
    _, model_pth, encoder_pt = release
    return {BP4D_ID: model_pth, DISFA_ID: model_pth, PSP_FFHQ.drive_id: encoder_pt}


def _manifest(tmp_path) -> dict:
    return json.loads((tmp_path / "cache" / "manifest.json").read_text())["files"]


# -- the HTTP part ---------------------------------------------------------------------------

def test_plain_download(serve, tmp_path):
    data = _payload(300_000)
    stub = serve({"abc": data})
    dest = download(drive_url("abc"), tmp_path / "out" / "file.bin", progress=False)
    assert dest.read_bytes() == data
    assert not partial_path(dest).exists()
    assert stub.requests == [{"id": "abc", "confirm": None, "range": None}]


def test_interrupted_download_resumes_with_range(serve, tmp_path):
    data = _payload(250_000)
    stub = serve({"abc": data}, cut_after=100_000, cuts=1)
    dest = tmp_path / "file.bin"
    with pytest.raises(UserError, match=r"100000 of 250000 bytes.*run the command again"):
        download(drive_url("abc"), dest, attempts=1, progress=False)
    assert not dest.exists()
    assert partial_path(dest).read_bytes() == data[:100_000]
    download(drive_url("abc"), dest, attempts=1, progress=False)
    assert dest.read_bytes() == data
    assert [r["range"] for r in stub.requests] == [None, "bytes=100000-"]


def test_retries_within_one_call_continue_where_they_stopped(serve, tmp_path):
    data = _payload(250_000)
    stub = serve({"abc": data}, cut_after=60_000, cuts=2)
    dest = download(drive_url("abc"), tmp_path / "file.bin", retry_delay=0, progress=False)
    assert dest.read_bytes() == data
    assert [r["range"] for r in stub.requests] == [None, "bytes=60000-", "bytes=120000-"]


def test_server_ignoring_range_gets_a_fresh_file(serve, tmp_path):
    data = _payload(50_000)
    stub = serve({"abc": data}, honour_range=False)
    dest = tmp_path / "file.bin"
    partial_path(dest).write_bytes(b"stale bytes of another file")
    download(drive_url("abc"), dest, progress=False)
    assert dest.read_bytes() == data
    assert stub.requests[0]["range"] == "bytes=27-"


def test_range_past_the_end(serve, tmp_path):
    """A partial file that is already whole is kept (416 names the size); a longer, stale one
    is discarded and the file fetched again."""
    data = _payload(40_000)
    stub = serve({"abc": data})
    dest = tmp_path / "file.bin"
    partial_path(dest).write_bytes(data)
    download(drive_url("abc"), dest, progress=False)
    assert dest.read_bytes() == data and len(stub.requests) == 1
    partial_path(dest).write_bytes(data + b"more")
    download(drive_url("abc"), dest, retry_delay=0, progress=False)
    assert dest.read_bytes() == data
    assert [r["range"] for r in stub.requests[1:]] == ["bytes=40004-", None]


@pytest.mark.parametrize("page", ["form", "link", "cookie"])
def test_drive_confirmation_page_then_file(serve, tmp_path, page):
    data = _payload(120_000)
    stub = serve({"abc": data}, page=page)
    dest = download(drive_url("abc"), tmp_path / "file.bin", progress=False)
    assert dest.read_bytes() == data
    expected = "t" if page == "form" else PAGE_TOKEN
    assert [r["confirm"] for r in stub.requests] == [None, expected]


@pytest.fixture()
def silent_server(monkeypatch):
    """A URL whose server accepts connections (the kernel's backlog does) and never answers;
    FGNET_VIDEO_DRIVE_URL points at it."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as server:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/download"
        monkeypatch.setenv("FGNET_VIDEO_DRIVE_URL", url)
        yield url


def test_default_timeouts_give_up_on_a_silent_server_within_30_s():
    waits = (download_module.ATTEMPTS * download_module.TIMEOUT_S
             + sum(retry_delays(download_module.ATTEMPTS, download_module.RETRY_DELAY_S)))
    assert waits <= 30
    assert retry_delays(3, 2.0) == [0.0, 2.0, 4.0]


def test_silent_server_fails_after_the_timeouts_with_a_clear_line(silent_server, tmp_path):
    started = time.monotonic()
    with pytest.raises(UserError) as error:
        download(silent_server, tmp_path / "file.bin", attempts=3, timeout=0.4,
                 retry_delay=0.1, progress=False)
    elapsed = time.monotonic() - started
    assert 3 * 0.4 + 0.1 + 0.2 <= elapsed < 3 * 0.4 + 0.3 + 3.0
    message = str(error.value)
    assert "\n" not in message
    assert "after 3 attempts (127.0.0.1:" in message and "nothing received for 0.4 s" in message
    assert not (tmp_path / "file.bin").exists()


def test_waiting_shows_a_connecting_status_on_a_terminal(silent_server, tmp_path, monkeypatch):
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200)
    monkeypatch.setattr(download_module, "_terminal", lambda: console)
    with pytest.raises(UserError):
        download(silent_server, tmp_path / "file.bin", label="model.pth", attempts=2,
                 timeout=0.3, retry_delay=0.3)
    shown = screen.getvalue()
    host = silent_server.split("/")[2]
    assert f"model.pth: connecting to {host}" in shown
    assert "retrying in 0.3 s" in shown and "(attempt 2 of 2)" in shown
    monkeypatch.undo()
    assert download_module._terminal() is None  # pytest's stderr is no terminal


def test_failed_known_weights_download_says_what_to_do_offline(serve, silent_server, tmp_path,
                                                               monkeypatch):
    monkeypatch.setattr(download_module, "TIMEOUT_S", 0.2)
    monkeypatch.setattr(download_module, "RETRY_DELAY_S", 0.0)
    started = time.monotonic()
    result = CliRunner().invoke(main, ["weights", "download", "bp4d"])
    assert time.monotonic() - started < 10
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line
    home = tmp_path / "cache"
    for part in ("download failed after 3 attempts", "nothing received for 0.2 s",
                 "--offline", "FGNET_VIDEO_OFFLINE=1",
                 "fgnet-video weights import model.pth --psp encoder.pt --dataset bp4d -o "
                 f"{home / 'bp4d.safetensors'}"):
        assert part in line


def test_drive_refusal_and_missing_file_are_one_line_errors(serve, tmp_path):
    serve({"abc": b"x"}, page="refuse")
    with pytest.raises(UserError, match="Quota exceeded") as refused:
        download(drive_url("abc"), tmp_path / "file.bin", progress=False)
    with pytest.raises(UserError, match="HTTP 404") as missing:
        download(drive_url("nope"), tmp_path / "file.bin", progress=False)
    for error in (refused, missing):
        assert "\n" not in str(error.value)
    assert not (tmp_path / "file.bin").exists()


# -- the cache ---------------------------------------------------------------------------------

def test_known_name_is_downloaded_converted_then_served_from_cache(serve, tmp_path, release):
    model, model_pth, encoder_pt = release
    stub = serve(_release_files(release), page="form")
    path, psp = resolve_weights("bp4d")
    home = tmp_path / "cache"
    assert (path, psp) == (str(home / "bp4d.safetensors"), None)
    assert {r["id"] for r in stub.requests} == {BP4D_ID, PSP_FFHQ.drive_id}
    assert sorted(p.name for p in home.iterdir() if not p.name.startswith(".")) == [
        "bp4d.safetensors", "manifest.json"]  # release files are removed once converted
    records = _manifest(tmp_path)
    assert records["fgnet-bp4d-model.pth"]["sha256"] == hashlib.sha256(model_pth).hexdigest()
    assert records["psp-ffhq-encoder.pt"]["size"] == len(encoder_pt)
    assert records["psp-ffhq-encoder.pt"]["source"] == f"gdrive:{PSP_FFHQ.drive_id}"
    assert records["bp4d.safetensors"]["size"] == (home / "bp4d.safetensors").stat().st_size

    seen = len(stub.requests)
    loaded = load_weights("bp4d")
    assert len(stub.requests) == seen  # the second use needs no request
    assert loaded.dataset == "bp4d" and loaded.model.config == TINY
    assert loaded.metadata["sources"]["model"]["drive_id"] == BP4D_ID
    digest = hashlib.sha256((home / "bp4d.safetensors").read_bytes()).hexdigest()
    assert loaded.checkpoint_sha256() == digest == records["bp4d.safetensors"]["sha256"]
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


def test_cache_files_are_readable_by_other_users(serve, tmp_path, release):
    """Under umask 022 every file the cache holds after a download is 0644 (the converted
    file included, which safetensors alone would create 0600)."""
    serve(_release_files(release))
    umask = os.umask(0o022)
    try:
        resolve_weights("bp4d")
    finally:
        os.umask(umask)
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "cache").iterdir()}
    assert modes == dict.fromkeys([".lock", "bp4d.safetensors", "manifest.json"], "0o644")


def test_changed_cached_file_is_reported_and_force_fetches_again(serve, tmp_path, release):
    stub = serve(_release_files(release))
    path, _ = resolve_weights("bp4d")
    with open(path, "r+b") as handle:  # same size, one byte different
        handle.seek(-1, 2)
        last = handle.read(1)
        handle.seek(-1, 2)
        handle.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(UserError, match=r"changed since it was recorded \(sha256 .*"
                                        r"fgnet-video weights download bp4d --force"):
        resolve_weights("bp4d")
    seen = len(stub.requests)
    result = CliRunner().invoke(main, ["weights", "download", "bp4d", "--force"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == path
    assert len(stub.requests) == seen + 2
    assert resolve_weights("bp4d") == (path, None)


def test_redownload_that_differs_from_its_record_is_refused(serve, tmp_path, release):
    files = _release_files(release)
    serve(files)
    resolve_weights("bp4d")  # records the encoder, then removes it after conversion
    serve({**files, PSP_FFHQ.drive_id: files[PSP_FFHQ.drive_id] + b"tampered"})
    with pytest.raises(UserError, match=r"pSp FFHQ encoder.pt: the downloaded file differs"
                                        r".*weights download disfa --force"):
        resolve_weights("disfa")
    assert not (tmp_path / "cache" / PSP_FFHQ.filename).exists()


def test_unreadable_release_file_is_removed_and_fetched_again_next_time(serve, tmp_path,
                                                                        release):
    serve({**_release_files(release), BP4D_ID: b"\x00not a checkpoint"})
    with pytest.raises(UserError, match=r"BP4D model.pth: the downloaded bytes are not the "
                                        r"expected file .*run the command again"):
        resolve_weights("bp4d")
    assert not (tmp_path / "cache" / "bp4d.safetensors").exists()
    serve(_release_files(release))
    assert resolve_weights("bp4d")[0].endswith("bp4d.safetensors")


def _legacy_checkpoint(cut: int | None = None) -> bytes:
    """torch.save's legacy (pre-zip) format, 2.9 MB, cut after `cut` bytes when given."""
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(600, 600)}, buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()[:cut]


@pytest.mark.parametrize("served, options, what", [
    (_payload(200_000), {}, "not a complete PyTorch checkpoint: unrecognised bytes"),
    (None, {"cut_after": 1 << 20, "cuts": 5, "no_length": True},
     "not a complete PyTorch checkpoint: a cut-off zip archive"),
    (b"\x80" + _payload(200_000), {}, "a pickle without torch.save's header"),  # 1 in 256
    (_legacy_checkpoint(cut=1 << 20), {}, "not a readable PyTorch checkpoint"),
], ids=["random", "cut-off", "random-after-a-pickle-mark", "cut-off-legacy"])
def test_a_download_is_checked_before_it_gets_its_name_or_a_record(serve, tmp_path, release,
                                                                   served, options, what):
    files = _release_files(release)
    if served is None:  # the real checkpoint, padded past 1 MB, then cut there
        files[BP4D_ID] = files[BP4D_ID] + bytes(2 << 20)
    else:
        files[BP4D_ID] = served
    serve(files, **options)
    with pytest.raises(UserError, match=what):
        resolve_weights("bp4d")
    cache = tmp_path / "cache"
    assert not (cache / "fgnet-bp4d-model.pth").exists()
    assert not list(cache.glob(".*fgnet-bp4d-model.pth*"))  # the partial is gone too
    manifest = cache / "manifest.json"
    assert not manifest.exists() or "fgnet-bp4d-model.pth" not in json.loads(
        manifest.read_text())["files"]


def test_offline_error_says_how_to_place_files_by_hand(serve, tmp_path, release, monkeypatch):
    stub = serve(_release_files(release))
    monkeypatch.setenv("FGNET_VIDEO_OFFLINE", "1")
    home = tmp_path / "cache"
    with pytest.raises(UserError) as error:
        resolve_weights("disfa")
    message = str(error.value)
    assert "\n" not in message
    for part in (str(home), "fgnet-disfa-model.pth", "psp-ffhq-encoder.pt",
                 "fgnet-video weights import model.pth --psp encoder.pt --dataset disfa -o "
                 f"{home / 'disfa.safetensors'}"):
        assert part in message
    result = CliRunner().invoke(main, ["weights", "download", "disfa"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "downloads are off" in result.output
    assert stub.requests == []

    # the files placed by hand, as the message says, are converted without any request
    _, model_pth, encoder_pt = release
    (home / "fgnet-disfa-model.pth").write_bytes(model_pth)
    (home / "psp-ffhq-encoder.pt").write_bytes(encoder_pt)
    loaded = load_weights("disfa")
    assert loaded.dataset == "disfa" and len(loaded.aus) == 8
    assert stub.requests == []
    record = _manifest(tmp_path)["fgnet-disfa-model.pth"]
    assert record["sha256"] == hashlib.sha256(model_pth).hexdigest()
    assert record["source"] == "placed in the cache"


def test_download_all_fetches_the_shared_encoder_once(serve, tmp_path, release):
    stub = serve(_release_files(release))
    result = CliRunner().invoke(main, ["weights", "download", "all"])
    assert result.exit_code == 0, result.output
    home = tmp_path / "cache"
    assert result.output.split() == [str(home / "bp4d.safetensors"),
                                     str(home / "disfa.safetensors")]
    assert [r["id"] for r in stub.requests].count(PSP_FFHQ.drive_id) == 1
    assert load_weights("disfa", offline=True).aus == (1, 2, 4, 6, 9, 12, 25, 26)


def test_hand_converted_file_with_the_wrong_au_set_is_refused(serve, tmp_path, release):
    serve({})
    home = tmp_path / "cache"
    home.mkdir()
    _, model_pth, encoder_pt = release
    (tmp_path / "model.pth").write_bytes(model_pth)
    (tmp_path / "encoder.pt").write_bytes(encoder_pt)
    result = CliRunner().invoke(main, ["weights", "import", str(tmp_path / "model.pth"), "--psp",
                                       str(tmp_path / "encoder.pt"), "--dataset", "disfa", "-o",
                                       str(home / "bp4d.safetensors")])
    assert result.exit_code == 0, result.output
    with pytest.raises(UserError, match="holds disfa weights, not bp4d"):
        resolve_weights("bp4d", offline=True)


def test_files_pass_through_and_bad_specs_are_user_errors(serve, tmp_path):
    stub = serve({})
    (tmp_path / "model.pth").write_bytes(b"")
    assert resolve_weights(str(tmp_path / "model.pth"), psp="enc.pt") == (
        str(tmp_path / "model.pth"), "enc.pt")
    with pytest.raises(UserError, match="not a known weights name \\(bp4d, disfa\\)"):
        resolve_weights("bp4e")
    with pytest.raises(UserError, match="--psp goes with a release model.pth"):
        resolve_weights("bp4d", psp="enc.pt")
    with pytest.raises(UserError, match="a folder"):
        resolve_weights(str(tmp_path))
    result = CliRunner().invoke(main, ["weights", "download", "nope"])
    assert result.exit_code == 1 and "unknown weights name 'nope'" in result.output
    assert stub.requests == []


def test_a_trickling_server_is_cut_instead_of_waited_for(tmp_path, monkeypatch):
    """One byte every 0.1 s never times out a read; the rate bound ends it."""

    class Trickle(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setattr(download_module, "RATE_WINDOW_S", 0.5)
    monkeypatch.setattr(download_module, "MIN_RATE", 100)
    try:
        with pytest.raises(UserError, match=r"download failed after 2 attempts \(too slow: "):
            download_module.download(f"http://127.0.0.1:{server.server_address[1]}/f",
                                     tmp_path / "f.bin", attempts=2, retry_delay=0,
                                     progress=False)
    finally:
        server.shutdown()
        server.server_close()


def test_weights_download_goes_through_the_output_guard(serve, tmp_path, release):
    """A release file's place in the cache is a link to a file not there yet (someone's
    path): one line, exit 2, nothing written through or over the link."""
    serve(_release_files(release))
    cache = tmp_path / "cache"
    cache.mkdir()
    link = cache / "fgnet-bp4d-model.pth"
    link.symlink_to(tmp_path / "elsewhere.pth")
    result = CliRunner().invoke(main, ["weights", "download", "bp4d"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"fgnet-video: error: {link}: is a link; give the path of a regular file as output"]
    assert link.is_symlink() and not (tmp_path / "elsewhere.pth").exists()


def test_sigterm_stops_a_download_at_once(silent_server, tmp_path, monkeypatch):
    """`weights download` waiting on a server that never answers: SIGTERM ends it within
    seconds (exit 143, one line), and nothing in the cache has a release file's name."""
    from .conftest import STOP_WITHIN_S, stopped_by_sigterm

    monkeypatch.setenv("FGNET_VIDEO_HOME", str(tmp_path / "cache"))
    since: list[float] = []

    def waiting() -> bool:  # the command has had two seconds to start its request
        since[:] = since or [time.monotonic()]
        return time.monotonic() - since[0] >= 2.0

    code, seconds, err = stopped_by_sigterm(["weights", "download", "bp4d"], waiting,
                                            tmp_path / "stderr.txt")
    assert code == 143, err
    assert err.strip().splitlines()[-1] == "fgnet-video: stopped (SIGTERM)", err
    assert seconds < STOP_WITHIN_S, f"stopped {seconds:.1f} s after SIGTERM"
    cache = tmp_path / "cache"
    assert not (cache / "fgnet-bp4d-model.pth").exists()
    assert not (cache / "bp4d.safetensors").exists()
