"""samuel.data.songlist: reading song CSVs, ids, duplicates, bad headers."""
import re

import pytest

from samuel.data.songlist import MAX_ID, Song, read_songlist, song_id

ID = re.compile(r"^[a-z0-9_-]{1,80}$")


def write(tmp_path, text, name="songs.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_title_artist_columns(tmp_path):
    songs = read_songlist(write(tmp_path, "title,artist\nShape of You,Ed Sheeran\nHello,Adele\n"))
    assert [(s.title, s.artist) for s in songs] == [("Shape of You", "Ed Sheeran"), ("Hello", "Adele")]
    assert songs[0].song_id.startswith("shape_of_you-ed_sheeran-")
    assert songs[0].query == "Shape of You Ed Sheeran"
    assert all(ID.match(s.song_id) for s in songs)


def test_kaggle_song_popularity_columns(tmp_path):
    text = ("song_name,song_popularity,song_duration_ms,acousticness\n"
            "Boulevard of Broken Dreams,73,262333,0.00552\n"
            "In The End,66,216933,0.0103\n")
    songs = read_songlist(write(tmp_path, text))
    assert [s.title for s in songs] == ["Boulevard of Broken Dreams", "In The End"]
    assert all(s.artist == "" for s in songs)
    assert songs[1].query == "In The End"


@pytest.mark.parametrize("column", ["artist_name", "artists", "Artist"])
def test_artist_column_variants(tmp_path, column):
    songs = read_songlist(write(tmp_path, f"Song_Name,{column}\nSong A,Someone\n"))
    assert songs == [Song.make("Song A", "Someone")]


def test_list_looking_artists_cell(tmp_path):
    songs = read_songlist(write(tmp_path, 'title,artists\nX,"[\'Drake\', \'Future\']"\n'))
    assert songs[0].artist == "Drake, Future"


def test_duplicates_removed_and_ids_unique(tmp_path):
    text = ("title,artist\nHello,Adele\nhello ,ADELE\nHello,Lionel Richie\n"
            "Hello!,Adele\n,Nobody\n")
    songs = read_songlist(write(tmp_path, text))
    assert [(s.title, s.artist) for s in songs] == [
        ("Hello", "Adele"), ("Hello", "Lionel Richie"), ("Hello!", "Adele")]
    ids = [s.song_id for s in songs]
    assert len(set(ids)) == 3
    # "Hello" and "Hello!" slug alike; the hash keeps them apart
    assert ids[0].rsplit("-", 1)[0] == ids[2].rsplit("-", 1)[0]


def test_song_id_is_safe_short_and_stable():
    long_id = song_id("A" * 300, "B" * 300)
    assert len(long_id) <= MAX_ID and ID.match(long_id)
    assert ID.match(song_id("Ça va / «Déjà vu» (Remix) ★", "Beyoncé"))
    assert song_id("Déjà vu", "Beyoncé").startswith("deja_vu-beyonce-")
    assert ID.match(song_id("残酷な天使のテーゼ", "高橋洋子"))  # no ascii at all: still an id
    assert song_id("../../etc/passwd", "").startswith("etc_passwd-")
    assert song_id("Hello", "Adele") == song_id("Hello", "Adele")
    assert song_id("Hello", "Adele") != song_id("Hello", "Lionel Richie")


def test_bom_and_spaced_header(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeff Title , Artist \nYesterday,The Beatles\n".encode("utf-8"))
    assert read_songlist(path) == [Song.make("Yesterday", "The Beatles")]


def test_no_title_column(tmp_path):
    path = write(tmp_path, "name_of_band,year\nX,1999\n", name="bands.csv")
    with pytest.raises(ValueError, match=r"bands\.csv: expected a title column .*song_name.*"
                                         r"found columns: name_of_band, year"):
        read_songlist(path)


def test_empty_csv(tmp_path):
    with pytest.raises(ValueError, match=r"empty\.csv: expected a CSV with a header row"):
        read_songlist(write(tmp_path, "", name="empty.csv"))
