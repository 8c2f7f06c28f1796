"""samuel.data.download: yt-dlp on local ``file://`` URLs; the network is never touched."""
import shutil
import socket

import numpy as np
import pytest
import soundfile as sf

from samuel.data.download import DownloadError, _Filter, _Logger, download, ydl_options
from samuel.data.songlist import Song

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="yt-dlp needs ffmpeg")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Name resolution fails, as on a machine with no network: nothing can leave this host."""
    def refuse(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def tone(seconds, sr, channels=1):
    t = np.arange(int(seconds * sr)) / sr
    return np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * channels).T.astype(np.float32)


def leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("name", ["src.flac", "src.wav"])
def test_file_url_becomes_44k1_stereo_wav(tmp_path, name):
    """FLAC goes through yt-dlp's ffmpeg step; a WAV is left as is by yt-dlp and fixed by us."""
    src = tmp_path / name
    sf.write(str(src), tone(1.0, 22050), 22050)
    song = Song.make("A Song: With / Odd <Chars>", "Someone")
    out = download(song, tmp_path / "out", url=src.as_uri(), allow_file_urls=True)
    assert out == tmp_path / "out" / f"{song.song_id}.wav"
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.format) == (44100, 2, "WAV")
    assert abs(info.duration - 1.0) < 0.01
    assert leftovers(tmp_path / "out") == []
    # a re-run returns the finished file without downloading again
    src.unlink()
    assert download(song, tmp_path / "out", url=src.as_uri(), allow_file_urls=True) == out


def test_over_15_minutes_rejected_after_download(tmp_path):
    src = tmp_path / "long.wav"  # 1000 s of silence at 2 kHz mono: 4 MB
    sf.write(str(src), np.zeros(1000 * 2000, np.float32), 2000)
    song = Song.make("Long", "")
    with pytest.raises(DownloadError) as err:
        download(song, tmp_path / "out", url=src.as_uri(), allow_file_urls=True)
    assert err.value.reason == "over 15 minutes (1000 s)"
    assert err.value.song_id == song.song_id
    assert list((tmp_path / "out").iterdir()) == []  # deleted, temp folder too


def test_file_urls_refused_by_default(tmp_path):
    src = tmp_path / "a.wav"
    sf.write(str(src), tone(0.1, 8000), 8000)
    with pytest.raises(DownloadError, match="file:// URLs are refused"):
        download(Song.make("A", ""), tmp_path / "out", url=src.as_uri())


def test_search_without_network_fails_in_one_line(tmp_path):
    song = Song.make("Hello", "Adele")
    with pytest.raises(DownloadError) as err:
        download(song, tmp_path / "out")  # default URL: ytsearch1:Hello Adele
    reason = err.value.reason
    assert reason.startswith("no network: ") and "\n" not in reason and len(reason) <= 240
    assert str(err.value).startswith(f"{song.song_id}: no network")
    assert leftovers(tmp_path / "out") == []


def test_match_filter_decides_from_metadata():
    f = _Filter(900, search=False)
    assert f({"id": "x", "duration": 200}) is None
    assert f({"id": "x", "duration": None}) is None  # unknown: measured after download
    assert f({"id": "x", "duration": 1000}) == "over 15 minutes (1000 s)"
    assert f({"playlist_id": "PL1", "playlist": "mix"}, incomplete=True) == "playlist"
    assert f({"_type": "playlist", "id": "PL1"}, incomplete=True) == "playlist"
    assert f({"id": "x", "live_status": "is_live"}) == "live stream"
    assert f.reason == "live stream"
    search = _Filter(900, search=True)
    assert search({"playlist_id": "Hello Adele"}, incomplete=True) is None  # the search itself
    assert search({"id": "v1", "playlist_id": "Hello Adele", "duration": 300}) is None
    assert search({"playlist_id": "PL2"}, incomplete=True) == "playlist"  # a hit that is a playlist


def test_options():
    opts = ydl_options("/x/song_id.%(ext)s", _Filter(900, False), _Logger(), sleep_interval=2.0)
    assert opts["outtmpl"] == {"default": "/x/song_id.%(ext)s"}
    assert opts["noplaylist"] and opts["quiet"] and opts["noprogress"]
    assert opts["retries"] == 3 and opts["sleep_interval"] == 2.0
    assert "enable_file_urls" not in opts
    assert opts["postprocessor_args"]["extractaudio"] == ["-ar", "44100", "-ac", "2"]
    assert opts["postprocessors"][0]["preferredcodec"] == "wav"
