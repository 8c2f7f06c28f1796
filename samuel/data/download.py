"""Download one song's audio with yt-dlp (design §2, paper §III-C).

The paper searched YouTube for "title artist", took the first hit, skipped playlists and
anything over 15 minutes, and kept the audio as WAV 44.1 kHz stereo. :func:`download` does
that for one :class:`~samuel.data.songlist.Song`, using yt-dlp as a library:

* the length and playlist checks run on the metadata, before anything is downloaded;
  entries without a known duration (``file://`` URLs) are measured after download;
* files are named from the ``song_id``, never from the web page's title;
* the download lands in a temp folder beside the output and is renamed into place, so an
  interrupted run never leaves a half-written ``<song_id>.wav``;
* every failure is a :class:`DownloadError` with a one-line reason a manifest can record.

Book: notebook 01, "The song-list path"; design §2.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import soundfile as sf

from samuel import audio
from samuel.data.songlist import Song

log = logging.getLogger(__name__)

SAMPLE_RATE = audio.SAMPLE_RATE  # WAV 44.1 kHz stereo (paper §III-C)
MAX_SECONDS = 900.0  # skip anything over 15 minutes (paper §III-C)
_NETWORK_ERRORS = ("name or service not known", "temporary failure in name resolution",
                   "nodename nor servname", "network is unreachable", "no route to host",
                   "connection refused", "connection reset", "timed out", "transporterror",
                   "getaddrinfo failed", "unable to download api page", "failed to resolve")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class DownloadError(RuntimeError):
    """A song that could not be downloaded; ``reason`` is one line for the manifest."""

    def __init__(self, song_id: str, reason: str):
        self.song_id = song_id
        self.reason = _one_line(reason)
        super().__init__(f"{song_id}: {self.reason}")


def _one_line(text: object, limit: int = 240) -> str:
    lines = [ln.strip() for ln in _ANSI.sub("", str(text)).splitlines() if ln.strip()]
    line = re.sub(r"^ERROR:\s*", "", lines[0]) if lines else "unknown error"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _reason(err: BaseException) -> str:
    """A one-line reason for a yt-dlp failure, marked ``no network:`` when it is one."""
    text = _one_line(err)
    if any(marker in str(err).lower() for marker in _NETWORK_ERRORS):
        return f"no network: {text}"
    return text


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} minutes"


class _Filter:
    """yt-dlp ``match_filter``: refuse playlists and long entries from metadata alone.

    The first playlist-level check of a search URL (``ytsearch1:``) is the search itself and
    passes; any other playlist is refused. The last refusal is kept in ``reason``.
    """

    def __init__(self, max_seconds: float, search: bool):
        self.max_seconds = max_seconds
        self.search = search
        self.reason: str | None = None

    def __call__(self, info: dict, *, incomplete: bool = False) -> str | None:
        reason = None
        is_playlist = info.get("_type") in ("playlist", "multi_video") or (
            "playlist_id" in info and "id" not in info)  # yt-dlp's playlist-level check
        if is_playlist:
            if self.search:
                self.search = False  # the search results themselves: let them through once
            else:
                reason = "playlist"
        elif info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
            reason = "live stream"
        else:
            duration = info.get("duration")
            if duration is not None and duration > self.max_seconds:
                reason = f"over {_minutes(self.max_seconds)} ({duration:.0f} s)"
        if reason:
            self.reason = reason
        return reason


class _Logger:
    """Routes yt-dlp's messages to :mod:`logging` and keeps its errors for the reason."""

    def __init__(self):
        self.errors: list[str] = []

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        log.info("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        self.errors.append(msg)
        log.debug("yt-dlp: %s", msg)


def ydl_options(outtmpl: str, filt: _Filter, logger: _Logger, *, allow_file_urls: bool = False,
                retries: int = 3, sleep_interval: float = 0.0) -> dict:
    """The yt-dlp options :func:`download` uses (a function so they can be read and tested)."""
    opts = {
        "format": "bestaudio/best",
        "outtmpl": {"default": outtmpl},  # from the song_id, never the web title
        "noplaylist": True,  # a watch?v=...&list=... URL means the video only
        "match_filter": filt,
        "quiet": True,
        "noprogress": True,  # quiet alone still prints progress
        "no_warnings": True,
        "logger": logger,
        "overwrites": True,
        "cachedir": False,
        "retries": retries,  # HTTP retries of one download
        "extractor_retries": retries,
        "fragment_retries": retries,
        "file_access_retries": retries,
        "socket_timeout": 20,
        "postprocessors": [{"key": "FFmpegExtractAudio", "preferredcodec": "wav"}],
        "postprocessor_args": {"extractaudio": ["-ar", str(SAMPLE_RATE), "-ac", "2"]},
    }
    if sleep_interval:
        # a random pause before each download, so a long list does not hit rate limits
        opts.update(sleep_interval=sleep_interval, max_sleep_interval=2 * sleep_interval)
    if allow_file_urls:
        opts["enable_file_urls"] = True
    return opts


def download(song: Song, out_dir: str | os.PathLike, url: str | None = None,
             max_seconds: float = MAX_SECONDS, allow_file_urls: bool = False,
             retries: int = 3, sleep_interval: float = 2.0) -> Path:
    """Download ``song`` to ``out_dir/<song_id>.wav`` (44.1 kHz stereo) and return that path.

    Args:
        song: the song; its ``song_id`` names the file.
        out_dir: output folder (created).
        url: what to fetch; default ``ytsearch1:<title> <artist>`` (the first search hit).
        max_seconds: refuse anything longer (paper: 15 minutes).
        allow_file_urls: accept ``file://`` URLs (tests, local collections).
        retries: yt-dlp retries of requests and downloads.
        sleep_interval: seconds to pause before each web download (rate limits);
            not applied to ``file://`` URLs.

    An existing non-empty output is returned as it is (re-runs skip finished work).

    Raises:
        DownloadError: with a one-line ``reason`` (``no network: ...``, ``playlist``,
            ``over 15 minutes (1000 s)``, ...).
    """
    import yt_dlp

    out_dir = Path(out_dir)
    out = out_dir / f"{song.song_id}.wav"
    if out.exists() and out.stat().st_size > 0:
        return out
    url = url or f"ytsearch1:{song.query}"
    is_file = url.lower().startswith("file:")
    if is_file and not allow_file_urls:
        raise DownloadError(song.song_id, "file:// URLs are refused unless allow_file_urls=True")
    out_dir.mkdir(parents=True, exist_ok=True)
    filt = _Filter(max_seconds, search=bool(re.match(r"^[a-z0-9]*search[a-z0-9]*:", url.lower())))
    logger = _Logger()
    tmp = Path(tempfile.mkdtemp(prefix=f".{song.song_id}.", suffix=".part", dir=out_dir))
    try:
        opts = ydl_options(str(tmp / f"{song.song_id}.%(ext)s"), filt, logger,
                           allow_file_urls=allow_file_urls, retries=retries,
                           sleep_interval=0.0 if is_file else sleep_interval)
        try:
            with yt_dlp.YoutubeDL(opts) as ydl:
                info = ydl.extract_info(url, download=True)
        except yt_dlp.utils.DownloadError as err:
            raise DownloadError(song.song_id, _reason(err)) from None
        wav = tmp / f"{song.song_id}.wav"
        if not wav.exists():
            if filt.reason:
                raise DownloadError(song.song_id, filt.reason)
            if info and info.get("_type") == "playlist" and not info.get("entries"):
                raise DownloadError(song.song_id, f"no results for {url!r}")
            raise DownloadError(song.song_id, _reason(logger.errors[-1]) if logger.errors
                                else "no audio file was produced")
        _check_and_normalise(song.song_id, wav, max_seconds)
        os.replace(wav, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _check_and_normalise(song_id: str, wav: Path, max_seconds: float) -> None:
    """Measure the download (``file://`` entries have no duration before it) and make sure it
    is 44.1 kHz stereo (yt-dlp leaves a WAV input as it is)."""
    try:
        info = sf.info(str(wav))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise DownloadError(song_id, f"not audio: {err}") from None
    if info.duration > max_seconds:
        raise DownloadError(song_id, f"over {_minutes(max_seconds)} ({info.duration:.0f} s)")
    if info.frames == 0:
        raise DownloadError(song_id, "no audio: 0 samples")
    if info.samplerate != SAMPLE_RATE or info.channels != 2:
        audio.save(wav, audio.load(wav, sr=SAMPLE_RATE, channels=2))
