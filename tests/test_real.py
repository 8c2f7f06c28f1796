"""samuel.evaluate.real: the MIDI tempo map, the excerpts, roughness, finding the songs, the
real-recordings evaluation end to end on short excerpts (where the Debian package
fretsonfire-songs-muldjord is installed), and on fake songs: unusable songs skipped, the table."""
import json

import mido
import numpy as np
import pytest

from samuel import cli, codecs, config
from samuel.audio import SAMPLE_RATE as SR
from samuel.evaluate import metrics, real


def write_midi(path, tpb=480, tempos=((0, 500000), (960, 250000), (1200, 1000000)),
               last_tick=1920, type_=1):
    """A MIDI file: tempo changes ``(tick, µs per beat)`` on the first track, one note ending at
    ``last_tick`` on the second."""
    mid = mido.MidiFile(type=type_, ticks_per_beat=tpb)
    conductor, notes = mido.MidiTrack(), mido.MidiTrack()
    prev = 0
    for tick, tempo in tempos:
        conductor.append(mido.MetaMessage("set_tempo", tempo=tempo, time=tick - prev))
        prev = tick
    notes.append(mido.Message("note_on", note=60, velocity=90, time=0))
    notes.append(mido.Message("note_off", note=60, velocity=0, time=last_tick))
    mid.tracks += [conductor, notes]
    mid.save(str(path))
    return path


def test_tempo_changes_give_exact_beat_times(tmp_path):
    # 120 BPM for two beats, 240 BPM for half a beat (to tick 1200, between beats), then 60 BPM
    path = write_midi(tmp_path / "map.mid")
    assert real.tempo_map(path) == (480, [(0, 500000), (960, 250000), (1200, 1000000)], 1920)
    # tick 0: 0 s; 480: 0.5; 960: 1.0; 1200: 1.125 (240 ticks at 0.25 s/beat); 1440: 1.625; 1920: 2.625
    assert real.beat_times(path).tolist() == [0.0, 0.5, 1.0, 1.625, 2.625]
    # past the file's end the last tempo continues, up to `until`
    assert real.beat_times(path, until=4.0).tolist() == [0.0, 0.5, 1.0, 1.625, 2.625, 3.625]
    assert real.beat_times(path, until=1.0).tolist() == [0.0, 0.5]


def test_tempo_map_defaults_and_same_tick_changes(tmp_path):
    # no tempo before tick 480: the MIDI default (120 BPM); two changes at one tick: the last wins
    path = write_midi(tmp_path / "late.mid", tpb=96, tempos=((192, 400000), (192, 300000)),
                      last_tick=480)
    tpb, changes, last = real.tempo_map(path)
    assert (tpb, changes, last) == (96, [(0, real.DEFAULT_TEMPO), (192, 300000)], 480)
    assert np.allclose(real.beat_times(path), [0.0, 0.5, 1.0, 1.3, 1.6, 1.9])
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not a midi file at all")
    with pytest.raises(ValueError, match=r"bad\.mid: expected a MIDI file, found unreadable data"):
        real.beat_times(bad)


def test_excerpts_skip_a_silent_lead_and_do_not_overlap():
    rng = np.random.default_rng(0)
    lead = 0.1 * rng.standard_normal((2, 20 * SR)).astype(np.float32)
    lead[:, : 8 * SR] = 0.0  # the lead rests for 8 s
    lead[:, 8 * SR: 9 * SR] *= 1e-4  # and is near-silent for one more
    starts = real.pick_excerpts(lead, 2 * SR, count=4, seed=[0, 1])
    assert len(starts) == 4 and starts == sorted(starts)
    assert all(s >= 10 * SR and s % (2 * SR) == 0 for s in starts)  # slots 10-20 s only
    assert all(b - a >= 2 * SR for a, b in zip(starts, starts[1:]))
    assert real.pick_excerpts(lead, 2 * SR, count=4, seed=[0, 1]) == starts
    assert len(real.pick_excerpts(lead, 2 * SR, count=9, seed=0)) == 5  # all that play
    assert real.pick_excerpts(lead[:, : 8 * SR], 2 * SR, count=2, seed=0) == []
    assert real.lead_active(lead[:, 8 * SR: 10 * SR]) == 0.5


def test_roughness_measures():
    frames = np.zeros((10, 45))
    mean, std = np.zeros(45), np.ones(45)
    assert real.roughness(frames, mean, std) == 0.0
    frames[1::2] = 2.0  # alternating 0, 2: every step changes by 2 (1 after z-scoring by 2)
    assert real.roughness(frames, mean, std) == pytest.approx(2.0)
    assert real.roughness(frames, mean, 2 * std) == pytest.approx(1.0)
    m, s = real.feature_scale([frames, frames + 1.0])
    assert m.shape == s.shape == (45,) and np.all(s > 0)
    lat = np.zeros((4, 16))
    lat[:, 8:] = 5.0  # a jump at the seam between two windows of 8 frames only
    assert real.latent_roughness(lat) == pytest.approx(5.0 / 15)
    assert real.latent_roughness(lat, window=8) == 0.0


def test_roughness_by_block_splits_the_whole():
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((20, 45))
    mean, std = np.zeros(45), np.ones(45)
    frames[:, 32:44] = 1.0  # a constant chroma block
    blocks = real.roughness_blocks(frames, mean, std)
    assert list(blocks) == list(real.BLOCK_NAMES) and blocks["chroma"] == 0.0
    widths = [hi - lo for lo, hi in metrics.FRAME_BLOCKS]
    whole = sum(w * blocks[b] for w, b in zip(widths, real.BLOCK_NAMES)) / sum(widths)
    assert whole == pytest.approx(real.roughness(frames, mean, std))


def test_corpus_roughness_reads_the_validation_accompaniment(tmp_path):
    """A steady accompaniment is smoother than one whose band levels jump every frame; no
    validation split gives None (and a logged reason), not an error."""
    from samuel.data import store

    codec = codecs.load("offline", griffin_lim_iters=2)
    steady = np.full((64, 32), -0.5, np.float32)
    jumpy = steady.copy()
    jumpy[:60, 1::2] = 1.5  # every other frame loud in every semitone band
    lat = {"steady": (steady, steady), "jumpy": (jumpy, jumpy)}
    popdb = tmp_path / "data" / "popdb"
    for split, song in (("train", "steady"), ("val", "steady")):
        store.write_split(popdb / split, [(song, 32)], lat.__getitem__, 16)
    mean, std = np.zeros(45), np.ones(45)
    calm = real.corpus_roughness(tmp_path / "data", codec, mean, std)
    assert calm["clips"] == 2 and set(calm["blocks"]) == set(real.BLOCK_NAMES)
    assert "validation accompaniment" in calm["source"]
    store.write_split(popdb / "val", [("jumpy", 32)], lat.__getitem__, 16)
    rough = real.corpus_roughness(popdb, codec, mean, std, seconds=0.1)  # at least two chunks
    assert rough["clips"] == 2 and rough["codec"] == "not recorded"
    assert rough["features"]["mean"] > 2 * calm["features"]["mean"]
    assert rough["blocks"]["mel"] > 2 * calm["blocks"]["mel"]


def test_corpus_roughness_skips_what_it_cannot_score_with_a_reason(tmp_path, caplog):
    from samuel.data import store

    codec = codecs.load("offline", griffin_lim_iters=2)
    mean, std = np.zeros(45), np.ones(45)
    lat = np.zeros((64, 32), np.float32)
    popdb = tmp_path / "data" / "popdb"
    store.write_split(popdb / "train", [("a", 32)], lambda _: (lat, lat), 16)
    with caplog.at_level("WARNING", logger=real.__name__):
        assert real.corpus_roughness(tmp_path / "nothing", codec, mean, std) is None
        assert real.corpus_roughness(tmp_path / "data", codec, mean, std) is None  # no val/
        store.write_split(popdb / "val", [("a", 32)], lambda _: (lat, lat), 16)
        (tmp_path / "data" / "provenance.json").write_text(json.dumps({"codec": {"name": "sao"}}))
        assert real.corpus_roughness(tmp_path / "data", codec, mean, std) is None  # other codec
        (tmp_path / "data" / "provenance.json").write_text(json.dumps({"codec": {"name": "offline"}}))
        (popdb / "val" / store.ACCOMP_FILE).write_bytes(b"not an array")
        assert real.corpus_roughness(tmp_path / "data", codec, mean, std) is None  # unreadable
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 4 and all("no corpus roughness" in m for m in said)
    assert "no validation split" in said[0] and "no validation split" in said[1]
    assert "'sao' latents" in said[2] and "'offline'" in said[2]


def test_roughness_text_survives_missing_values():
    """NaN is written to results.json as null: the notes and the report print n/a for it."""
    rough = {"features": {"real": {"mean": None}}, "features_ratio": {"conditioned": None},
             "blocks": {"conditioned": {"mel": None, "chroma": 0.5, "onset": 1.0},
                        "real": {"mel": 0.1, "chroma": 0.2, "onset": 0.3}},
             "corpus": {"clips": 2, "features": {"mean": 0.4, "lo": 0.3, "hi": 0.5, "n": 2},
                        "ratio": None, "blocks": {"mel": 0.3, "chroma": None, "onset": 1.6}}}
    notes = real._roughness_notes(rough)
    assert "n/a x real" not in notes[0] and "n/ax real" in notes[0]
    assert notes[1].startswith("roughness (features) by block: conditioned mel n/a, chroma 0.500")
    assert "training corpus mel 0.300, chroma n/a, onset 1.600" in notes[1]
    from samuel.evaluate import report

    line = report.roughness_note({"ratio": {"conditioned": None, "null": 1.25},
                                  "features": {"real": {"mean": float("nan")}}})
    assert "conditioned n/ax" in line and "null 1.25x" in line and "(n/a)" in line


def test_finding_the_songs(tmp_path, monkeypatch):
    for name in ("b_song", "a_song"):
        d = tmp_path / "songs" / "band" / name
        d.mkdir(parents=True)
        for f in (real.LEAD, real.BACKING, real.TEMPO_MAP):
            (d / f).write_bytes(b"x")
    (tmp_path / "songs" / "band" / "no_midi").mkdir()
    (tmp_path / "songs" / "band" / "no_midi" / real.LEAD).write_bytes(b"x")
    found = real.find_songs(tmp_path / "songs")
    assert [p.name for p in found] == ["a_song", "b_song"]
    monkeypatch.setenv(real.FOF_ENV, str(tmp_path / "songs" / "band"))
    assert [p.name for p in real.find_songs()] == ["a_song", "b_song"]
    monkeypatch.setenv(real.FOF_ENV, str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="empty: expected song folders holding guitar.ogg"):
        real.find_songs()


def test_without_the_songs_one_line_and_exit_0(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(real.FOF_ENV, raising=False)
    monkeypatch.setattr(real, "FOF_FOLDERS", (str(tmp_path / "nowhere"),))
    res = real.evaluate_real(config.load("smoke"))
    assert res["available"] is False and real.PACKAGE in res["reason"]
    assert real.format_real(res) == res["reason"] and "\n" not in res["reason"]
    assert real.table_rows(res) == []
    assert cli.main(["evaluate", "--real", "--profile", "smoke"]) == 0
    assert capsys.readouterr().out.strip() == real.unavailable_reason()


SONGS = real.find_songs()
needs_songs = pytest.mark.skipif(not SONGS, reason=f"the Debian package {real.PACKAGE} is not "
                                 f"installed (nor {real.FOF_ENV} set)")


@needs_songs
def test_the_tempo_maps_fit_the_recorded_backings():
    """The MIDI beats are the recording's: onsets of the real backing fall on them, and less so
    half a beat later (30 s of each song)."""
    from samuel import audio

    for folder in SONGS:
        backing = audio.load(folder / real.BACKING)[:, 40 * SR: 70 * SR]
        beats = [b - 40.0 for b in real.beat_times(folder / real.TEMPO_MAP) if 40.0 <= b < 70.0]
        half = real.tempo_map(folder / real.TEMPO_MAP)[1][-1][1] / 2e6  # half a beat, seconds
        on = metrics.beat_alignment(backing, beats)
        off = metrics.beat_alignment(backing, [b + half for b in beats])
        assert on > 1.1 and on > off + 0.2, folder.name


@needs_songs
def test_real_evaluation_end_to_end_on_short_excerpts(tmp_path):
    from samuel.model import build

    import torch

    torch.manual_seed(0)
    cfg = config.load("smoke", fast_steps=2)
    stats = {s: {"mean": [0.0] * 64, "std": [1.0] * 64} for s in ("vocal", "accomp")}
    out = tmp_path / "real"
    from samuel.data import store

    corpus = tmp_path / "data"
    lat = np.zeros((64, 32), np.float32)
    for split in ("train", "val"):
        store.write_split(corpus / "popdb" / split, [("song", 32)], lambda _: (lat, lat), 16)
    res = real.evaluate_real(cfg, checkpoint=build(cfg), seconds=3.0, per_song=1, stats=stats,
                             out_dir=out, codec=codecs.load("offline", griffin_lim_iters=4),
                             progress=False, n_examples=1, corpus=corpus)
    n = len(SONGS)
    assert res["available"] and res["n_excerpts"] == n and res["n_songs"] == n
    assert res["windows_per_excerpt"] == 2 and res["excerpt_seconds"] == pytest.approx(2.97, abs=0.01)
    assert all(e["song"] != e["shuffled_lead_from"] for e in res["excerpts"])
    assert all(e["lead_active"] >= real.ACTIVE_FRACTION and e["beats"] >= 6 for e in res["excerpts"])
    for c in real.REAL_CONDITIONS:
        for m in metrics.METRICS:
            assert res["fit"][c][m]["n"] == n or m == "beat"
        assert res["keys"][c]["distinct"] == len(set(res["keys"][c]["keys"])) <= n
        assert 0.0 <= res["apa"][c]["apa"] <= 1.0
    assert set(res["beats_baselines"]) == set(res["beats_other_song"]) == set(metrics.METRICS)
    for kind in ("features", "latents"):
        assert set(res["roughness"][kind]) == {*metrics.CONDITIONS, "real"}
        assert res["roughness"][kind]["real"]["mean"] > 0
        assert set(res["roughness"][f"{kind}_within_target"]) == set(metrics.CONDITIONS)
    assert res["fit"]["real"]["key"]["n"] == n and res["fit"][real.OTHER]["frechet"]["mean"] > 0
    rough = res["roughness"]
    assert rough["corpus"]["clips"] == 2 and rough["corpus"]["ratio"] == pytest.approx(
        rough["corpus"]["features"]["mean"] / rough["features"]["real"]["mean"])
    assert set(rough["blocks"]) == {"conditioned", "real"}

    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["fit"] == res["fit"] and real.format_real(on_disk) == real.format_real(res)
    text = real.format_real(res)
    assert "other_song" in text and "conditioned beats shuffled and null on chroma" in text
    assert "training corpus's own accompaniment" in text and "by block: conditioned mel" in str(
        real.real_table(res))
    rows = real.table_rows(res)
    assert [r["metric"] for r in rows][:4] == list(metrics.METRICS)
    assert {"APA", "distinct keys", "roughness (features)"} <= {r["metric"] for r in rows}
    examples = real.real_examples(out)
    assert len(examples) == 1
    title, parts = examples[0]
    assert title.startswith(res["excerpts"][0]["song"])
    assert set(parts) >= {"lead (stands for the vocal)", "generated accompaniment", "real backing"}
    assert all(x.shape[0] == 2 and x.shape[1] > SR for x in parts.values())


# --------------------------------------------------------------------------- fake songs


def write_song(folder, seconds, seed, lead=True, backing=True, midi=True):
    """A song folder of the Frets on Fire layout: a noisy lead, a backing of a chord with a
    click on every beat (120 BPM), and the tempo map; ``False`` writes that file broken."""
    import soundfile as sf

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) / 6
    clicks = np.zeros(n)
    for b in range(0, n, SR // 2):
        clicks[b:b + 200] = 0.8 * rng.standard_normal(min(200, n - b))
    stems = {real.LEAD: (0.2 * rng.standard_normal(n), lead),
             real.BACKING: (chord + clicks, backing)}
    for name, (x, ok) in stems.items():
        if ok:
            sf.write(str(folder / name), np.stack([x, x], 1).astype(np.float32), SR,
                     format="OGG", subtype="VORBIS")
        else:
            (folder / name).write_bytes(b"OggS but not really an ogg file")
    if midi:
        write_midi(folder / real.TEMPO_MAP, tempos=((0, 500000),), last_tick=int(seconds * 960))
    else:
        (folder / real.TEMPO_MAP).write_bytes(b"MThd broken")
    return folder


class _Records(__import__("logging").Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


def _evaluate_fake(folder, out):
    import logging

    import torch

    from samuel.model import build

    torch.manual_seed(0)
    cfg = config.load("smoke", fast_steps=2)
    stats = {s: {"mean": [0.0] * 64, "std": [1.0] * 64} for s in ("vocal", "accomp")}
    handler = _Records()
    logger = logging.getLogger(real.__name__)
    logger.addHandler(handler)
    try:
        res = real.evaluate_real(cfg, checkpoint=build(cfg), folder=folder, seconds=3.0,
                                 per_song=1, stats=stats, out_dir=out, progress=False,
                                 codec=codecs.load("offline", griffin_lim_iters=2), n_examples=1)
    finally:
        logger.removeHandler(handler)
    return res, handler.records


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """The evaluation on five fake songs of which three cannot be used: an unreadable lead, an
    unreadable tempo map, and one too short for a 3 s excerpt."""
    root = tmp_path_factory.mktemp("fof")
    write_song(root / "a_good", 4.0, seed=1)
    write_song(root / "b_good", 4.0, seed=2)
    write_song(root / "c_bad_lead", 4.0, seed=3, lead=False)
    write_song(root / "d_bad_midi", 4.0, seed=4, midi=False)
    write_song(root / "e_short", 1.5, seed=5)
    return _evaluate_fake(root, root / "out")


def test_unusable_songs_are_skipped_with_a_warning(fake_run):
    res, records = fake_run
    assert res["available"] and res["n_songs"] == 2 and res["n_excerpts"] == 2
    assert [s["song"] for s in res["songs"]] == ["a_good", "b_good"]
    skipped = {s["song"]: s["reason"] for s in res["skipped"]}
    assert list(skipped) == ["c_bad_lead", "d_bad_midi", "e_short"]
    assert skipped["c_bad_lead"].startswith(f"{res['skipped'][0]['folder']}/{real.LEAD}: expected ")
    assert f"{real.TEMPO_MAP}: expected a MIDI file, found unreadable data" in skipped["d_bad_midi"]
    assert f"e_short/{real.LEAD}: expected at least 2.97 s (one excerpt), found 1.50 s" in skipped["e_short"]
    warned = [r.getMessage() for r in records if r.levelname == "WARNING"]
    assert len(warned) == 3 and all("\n" not in w for w in warned)
    for (song, reason), w in zip(skipped.items(), warned):
        assert song in w and reason in w
    text = real.format_real(res)
    assert all(f"skipped {song}: {reason}" in text for song, reason in skipped.items())
    assert {e["song"] for e in res["excerpts"]} == {"a_good", "b_good"}


def test_real_table_renders_html_with_one_row_per_metric(fake_run):
    res = fake_run[0]
    table = real.real_table(res)
    rows = real.table_rows(res)
    assert table.header == ["metric", *real.REAL_CONDITIONS, "real"]
    assert [r[0] for r in table.rows] == [r["metric"] for r in rows]
    assert [r[0] for r in table.rows][:len(metrics.METRICS) + 1] == [*metrics.METRICS, "fad"]
    assert table.rows[0][1] == real._cell(res["fit"]["conditioned"]["chroma"])
    assert table.rows[0][1].count("[") == 1  # mean [lo, hi]
    html = table._repr_html_()
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    assert body.count("<tr>") == len(rows) == len(metrics.METRICS) + 6
    assert "<caption>Real recordings" in html and "2 excerpts of 2 songs" in html
    assert str(table) in real.format_real(res)
    assert "conditioned beats shuffled and null on key" in real.format_real(res)
    absent = real.real_table({"available": False, "reason": "no songs here"})
    assert absent.rows == [["no songs here"]] and "no songs here" in absent._repr_html_()


def test_fewer_than_two_readable_songs_is_a_clear_error(tmp_path):
    write_song(tmp_path / "a_good", 4.0, seed=1)
    write_song(tmp_path / "b_bad_backing", 4.0, seed=2, backing=False)
    with pytest.raises(ValueError, match=r"expected excerpts of at least two songs, found 1 .*"
                                         r"skipped b_bad_backing: .*song\.ogg: expected"):
        _evaluate_fake(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
