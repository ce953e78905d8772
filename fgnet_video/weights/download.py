"""Resumable HTTP downloads (standard library only), including Google Drive's confirmation step.

A file is written to a stable hidden `.NAME.part` beside its destination, so an interrupted
transfer continues where it stopped (`Range: bytes=N-`), within one call (a few attempts) or
in a later one; it is renamed to its final name only when every byte has arrived.

Never silent, never stuck: every connection attempt and every read waits at most TIMEOUT_S
seconds, and ATTEMPTS attempts with their back-off (`retry_delays`) add up to under 30 s on a
server that accepts the connection and never answers; a server that trickles bytes is cut
when it averages under MIN_RATE over RATE_WINDOW_S. On a terminal a "connecting to HOST"
status shows while no byte has arrived, then a progress bar.

Google Drive answers a large file with an HTML page instead of the file ("can't scan for
viruses"). The page carries the next request either as a form (`id`, `export`, `confirm`,
`uuid` inputs: drive.usercontent.google.com), as a link with `confirm=` in its query
(drive.google.com/uc), or as a `download_warning*` cookie whose value is the `confirm` token.
"""

from __future__ import annotations

import html
import http.client
import http.cookiejar
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from fgnet_video.errors import UserError
from fgnet_video.version import __version__

DRIVE_URL_ENV = "FGNET_VIDEO_DRIVE_URL"
DEFAULT_DRIVE_URL = "https://drive.usercontent.google.com/download"
CHUNK = 1 << 20
MAX_PAGE = 1 << 20
TIMEOUT_S = 8.0  # the longest wait for a connection, or for the next bytes of an answer
# A transfer slower than MIN_RATE bytes/s over any RATE_WINDOW_S is cut (and resumed by the
# next attempt): a server that trickles bytes never times out a single read, so this bounds
# a download at about its size / MIN_RATE.
MIN_RATE = 16 * 1024
RATE_WINDOW_S = 30.0
ATTEMPTS = 3
RETRY_DELAY_S = 1.0  # attempt k (from 0) waits k * RETRY_DELAY_S first
USER_AGENT = f"fgnet-video/{__version__} (+urllib)"


class _Interrupted(Exception):
    """The connection ended before the announced number of bytes arrived."""


def drive_url(file_id: str, base_url: str | None = None) -> str:
    """The download URL of a Drive file id (base from FGNET_VIDEO_DRIVE_URL when set)."""
    base = base_url or os.environ.get(DRIVE_URL_ENV) or DEFAULT_DRIVE_URL
    return _with_query(base, {"id": file_id, "export": "download"})


def _with_query(url: str, params: dict[str, str]) -> str:
    """`url` with `params` merged into its query string (params win)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True)) | params
    return urlunsplit(parts._replace(query=urlencode(query)))


# -- Drive confirmation pages ----------------------------------------------------------------

class _PageParser(HTMLParser):
    """Collects the forms (action + inputs), `confirm=` links and the title of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.links: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), {}))
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1][1][values["name"]] = values.get("value", "")
        elif tag == "a" and "confirm=" in values.get("href", ""):
            self.links.append(values["href"])
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def confirmation_url(page: str, page_url: str, cookies: dict[str, str]) -> str | None:
    """The URL that gets the file past Drive's warning page, or None when the page has none
    (a quota, permission or sign-in page)."""
    parser = _PageParser()
    parser.feed(page)
    for action, inputs in parser.forms:
        action_url = urljoin(page_url, action)
        if "confirm" in inputs or "confirm=" in action_url:
            return _with_query(action_url, inputs)
    if parser.links:
        return urljoin(page_url, html.unescape(parser.links[0]))
    token = next((v for k, v in cookies.items() if k.startswith("download_warning")), None)
    if token is not None:
        return _with_query(page_url, {"confirm": token})
    return None


def _page_title(page: str) -> str:
    parser = _PageParser()
    parser.feed(page)
    title = " ".join(parser.title.split())
    if title:
        return title
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    return text[:120] or "an empty page"


# -- transfer --------------------------------------------------------------------------------

def _is_html(response: http.client.HTTPResponse) -> bool:
    return response.headers.get_content_type() == "text/html"


def _request(url: str, start: int) -> urllib.request.Request:
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.Request(url, headers=headers)


def _open_file(url: str, start: int, label: str, timeout: float) -> http.client.HTTPResponse:
    """A response whose body is the file (from byte `start` when the server honours Range),
    after at most one Drive confirmation page."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    response = opener.open(_request(url, start), timeout=timeout)
    if not _is_html(response):
        return response
    with response:
        page = response.read(MAX_PAGE).decode("utf-8", "replace")
        page_url = response.geturl()
    next_url = confirmation_url(page, page_url, {c.name: c.value or "" for c in jar})
    if next_url is not None:
        response = opener.open(_request(next_url, start), timeout=timeout)
        if not _is_html(response):
            return response
        with response:
            page = response.read(MAX_PAGE).decode("utf-8", "replace")
    raise UserError(
        f"{label}: the server sent a web page instead of the file ({_page_title(page)!r}); "
        "Google Drive may be over its download quota: try again later or fetch it by hand"
    )


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """(first byte, total or None) of a `Content-Range: bytes A-B/T` header."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value or "")
    if match is None:
        return None
    return int(match[1]), None if match[2] == "*" else int(match[2])


def _body_start_and_total(response: http.client.HTTPResponse) -> tuple[int, int | None]:
    """Where the body starts in the file and the file's total size (None when not announced).
    A server that ignores Range answers 200 with the whole file: the body then starts at 0."""
    if response.status == 206:
        span = _content_range(response.headers.get("Content-Range"))
        if span is None:
            raise _Interrupted(f"unreadable Content-Range {response.headers['Content-Range']!r}")
        return span
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None


def _transfer(url: str, part: Path, label: str, timeout: float, console: Console | None,
              waiting: str) -> None:
    """One attempt: append the rest of the file to `part` (or rewrite it when the server
    ignores Range), showing `waiting` on `console` until the answer arrives. Raises
    _Interrupted when fewer bytes arrive than announced."""
    start = part.stat().st_size if part.exists() else 0
    try:
        with _status(console, waiting):
            response = _open_file(url, start, label, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 416:
            raise
        span = re.fullmatch(r"\s*bytes\s+\*/(\d+)\s*", exc.headers.get("Content-Range") or "")
        if span is not None and int(span[1]) == start:
            return  # the partial file is already complete
        part.unlink(missing_ok=True)
        raise _Interrupted("the partial file does not fit the remote one: starting over") from None
    with response:
        offset, total = _body_start_and_total(response)
        if offset not in (0, start):
            part.unlink()
            raise _Interrupted(f"the server resumed at byte {offset}, not {start}: starting over")
        with open(part, "ab" if offset else "wb") as out, \
                _progress(label, total, offset, console) as advance:
            window_start, window_bytes = time.monotonic(), 0
            while block := response.read1(CHUNK):  # what has arrived, up to CHUNK
                out.write(block)
                advance(len(block))
                window_bytes += len(block)
                elapsed = time.monotonic() - window_start
                if elapsed >= RATE_WINDOW_S:
                    if window_bytes < MIN_RATE * elapsed:
                        raise _Interrupted(f"too slow: {window_bytes} bytes in the last "
                                           f"{elapsed:.0f} s")
                    window_start, window_bytes = time.monotonic(), 0
            written = out.tell()
    if total is not None and written != total:
        raise _Interrupted(f"connection closed after {written} of {total} bytes")


def retry_delays(attempts: int, retry_delay: float) -> list[float]:
    """The pause before each attempt: none before the first, then a growing one."""
    return [retry_delay * attempt for attempt in range(attempts)]


class NotTheFile(UserError):
    """A download arrived whole, but its bytes are not the file that was asked for."""


def download(
    url: str,
    dest: str | os.PathLike,
    label: str | None = None,
    attempts: int | None = None,
    retry_delay: float | None = None,
    progress: bool = True,
    timeout: float | None = None,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Fetch `url` into `dest`, resuming a partial `.NAME.part` left by an earlier attempt.

    Transient failures (connection drops, timeouts, 5xx) are retried: `attempts` attempts in
    all (default ATTEMPTS), paused as `retry_delays` says (default RETRY_DELAY_S), each
    continuing from the bytes already on disk; `timeout` (default TIMEOUT_S) bounds every wait
    for a connection or for data. A 4xx or a web page instead of the file is a UserError at
    once. The partial file is kept on failure. With `progress`, a terminal shows a status
    while connecting and a progress bar while bytes arrive. `check(partial)`, when given,
    runs once every byte has arrived and before the file gets its final name: a UserError
    from it removes the partial and is raised (the bytes are not the expected file).
    """
    dest = Path(dest)
    label = label or dest.name
    part = partial_path(dest)
    attempts = ATTEMPTS if attempts is None else attempts
    timeout = TIMEOUT_S if timeout is None else timeout
    delays = retry_delays(attempts, RETRY_DELAY_S if retry_delay is None else retry_delay)
    dest.parent.mkdir(parents=True, exist_ok=True)
    console = _terminal() if progress else None
    host = urlsplit(url).netloc
    reason = ""
    for attempt, delay in enumerate(delays):
        waiting = f"{label}: connecting to {host}"
        if attempt:
            with _status(console, f"{label}: {reason}; retrying in {delay:g} s"):
                time.sleep(delay)
            waiting += f" (attempt {attempt + 1} of {attempts})"
        try:
            _transfer(url, part, label, timeout, console, waiting)
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429:
                raise UserError(f"{label}: download refused: HTTP {exc.code} {exc.reason} "
                                f"({url})") from None
            reason = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, TimeoutError) as exc:  # URLError wraps connect errors
            cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            reason = (f"{host}: nothing received for {timeout:g} s"
                      if isinstance(cause, TimeoutError) else f"{host}: {cause}")
        except (_Interrupted, http.client.HTTPException, OSError) as exc:
            reason = str(exc) or type(exc).__name__
        else:
            if check is not None:
                try:
                    check(part)
                except UserError as exc:
                    part.unlink(missing_ok=True)
                    raise NotTheFile(f"{label}: the downloaded bytes are not the expected "
                                     f"file ({exc}); they were removed (run the command "
                                     "again to download it again)") from None
            os.replace(part, dest)
            return dest
    kept = part.stat().st_size if part.exists() else 0
    then = (f"{kept} bytes kept in {part}: run the command again to resume" if kept else
            "check the connection and run the command again")
    raise UserError(f"{label}: download failed after {attempts} attempts ({reason}); {then}")


def partial_path(dest: str | os.PathLike) -> Path:
    """The stable in-progress name of a download (kept between runs so it can resume)."""
    dest = Path(dest)
    return dest.with_name(f".{dest.name}.part")


def _terminal() -> Console | None:
    """A console on stderr when stderr is a terminal (status lines, progress bars), else None
    (pipes and CI stay quiet)."""
    console = Console(stderr=True)
    return console if console.is_terminal else None


def _status(console: Console | None, text: str) -> AbstractContextManager:
    """A rich status line (spinner and `text`) on `console` for a block; nothing without one."""
    return console.status(text) if console is not None else nullcontext()


@contextmanager
def _progress(label: str, total: int | None, completed: int, console: Console | None
              ) -> Iterator[Callable[[int], None]]:
    """A rich byte-progress bar on `console`; a no-op callback without one."""
    if console is None:
        yield lambda n: None
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(label, total=total, completed=completed)
        yield lambda n: bar.advance(task, n)
