"""samuel/reproduce.py: a run's recorded results against the committed ones, and the tables
page made from the committed results (book: "Reproduce it", "Paper tables beside ours")."""
from __future__ import annotations

import json
import re

import nbformat
import pytest

from samuel import book, paths, reproduce
from samuel.io import read_json, write_json


def _run(tmp_path, results: dict):
    for stem, values in results.items():
        write_json(tmp_path / "results" / f"{stem}.json", {"profile": "demo", **values})
    return tmp_path


COMMITTED = {"notebooks": {"04_training": {"best_val_loss": 1.502, "val_loss_fell_10pct": True,
                                           "seconds": 1109.0, "device": "cpu", "parameters": 2261088},
                           "05_sigma_vs_timestep": {"boundary_t": 758, "within_100_of_paper": False}}}


def test_kinds_and_tolerances():
    assert reproduce.kind_of("seconds") == "time" and reproduce.kind_of("device") == "time"
    assert reproduce.kind_of("best_val_loss") == "loss" and reproduce.kind_of("key_shuffled") == "fit"
    assert reproduce.kind_of("mix_chroma_r") == "codec" and reproduce.kind_of("songs") == "exact"
    assert reproduce.tolerance("seconds", "demo") is None
    assert reproduce.tolerance("songs", "smoke") == reproduce.ROUNDING
    assert reproduce.tolerance("boundary_t", "smoke") == 1.0


def test_an_identical_run_agrees_and_timings_are_not_compared(tmp_path):
    ours = json.loads(json.dumps(COMMITTED["notebooks"]))
    ours["04_training"]["seconds"], ours["04_training"]["device"] = 3.0, "cuda"
    ours["04_training"]["best_val_loss"] += 0.001  # one unit of rounding
    assert reproduce.check(_run(tmp_path, ours), "demo", COMMITTED) == []


@pytest.mark.parametrize("change, why", [
    (("04_training", "val_loss_fell_10pct", False), "differs"),
    (("04_training", "best_val_loss", 1.51), "off by"),
    (("04_training", "parameters", 2261089), "off by 1"),
    (("05_sigma_vs_timestep", "boundary_t", 740), "tolerance 8, boundary"),  # twice 4 steps
])
def test_a_changed_result_is_a_mismatch(tmp_path, change, why):
    ours = json.loads(json.dumps(COMMITTED["notebooks"]))
    nb, key, value = change
    ours[nb][key] = value
    (m,) = reproduce.check(_run(tmp_path, ours), "demo", COMMITTED)
    assert (m["notebook"], m["result"]) == (nb, key) and why in m["why"]


def test_missing_results_and_notebooks_are_mismatches(tmp_path, capsys):
    ours = {"04_training": {k: v for k, v in COMMITTED["notebooks"]["04_training"].items()
                            if k != "parameters"}}
    run = _run(tmp_path, ours)
    found = {(m["notebook"], m["result"], m["why"]) for m in reproduce.check(run, "demo", COMMITTED)}
    assert found == {("04_training", "parameters", "result missing"),
                     ("05_sigma_vs_timestep", "(all)", "notebook missing")}
    committed = tmp_path / "committed.json"
    write_json(committed, COMMITTED)
    assert reproduce.main(["check", "--profile", "demo", "--run-dir", str(run),
                           "--committed", str(committed)]) == 1
    out = capsys.readouterr().out
    assert "2 mismatch(es)" in out and "parameters" in out


def test_commit_then_check_round_trip(tmp_path):
    run = _run(tmp_path / "run", COMMITTED["notebooks"])
    out = reproduce.commit(run, "demo", tmp_path / "demo.json")
    assert read_json(out)["notebooks"] == COMMITTED["notebooks"]
    assert reproduce.main(["--profile", "demo", "--run-dir", str(run), "--committed", str(out)]) == 0


def test_spread_is_zero_for_a_copy_and_names_the_kind(tmp_path):
    a = _run(tmp_path / "a", COMMITTED["notebooks"])
    other = json.loads(json.dumps(COMMITTED["notebooks"]))
    other["04_training"]["best_val_loss"] = 1.5
    b = _run(tmp_path / "b", other)
    assert reproduce.spread(a, a)["spread"] == {"loss": 0.0, "exact": 0.0, "boundary": 0.0}
    assert reproduce.spread(a, b)["spread"]["loss"] == pytest.approx(0.002)


def _printed_results(cell) -> dict:
    """``key : value`` lines that `record` printed in a committed notebook's last cell."""
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    return dict(re.findall(r"^(\w+)\s+: (.*)$", text, re.M))


@pytest.mark.parametrize("name", book.NOTEBOOKS)
def test_committed_demo_results_are_the_committed_notebooks_numbers(name):
    """book/results/demo.json holds what each committed notebook's results cell printed."""
    committed = reproduce.load_committed("demo")["notebooks"][name[:-len(".ipynb")]]
    nb = nbformat.read(str(paths.ROOT / "notebooks" / name), as_version=4)
    printed = _printed_results(nb.cells[-1])
    assert printed, f"{name}: expected the results printed by its last cell"
    assert set(printed) == set(committed), name
    for key, text in printed.items():
        assert str(committed[key]) == text or json.dumps(committed[key]) == text, (name, key)


def test_tables_page_is_generated_from_the_committed_results():
    page = (paths.ROOT / "book" / "tables.md").read_text(encoding="utf-8")
    assert page == reproduce.tables_page(), "book/tables.md: regenerate it (reproduce.write_tables_page)"
    assert "| SAMUeL | paper (10 tracks) | 5.73 | 5.14 | 2.93 | 4.97 |" in page
    demo = reproduce.load_committed("demo")["evaluation"]["efficiency"]
    assert f"| {demo['parameters']:,} | {demo['ancestral_seconds_per_47s_clip']:.2f} |" in page
    if not reproduce.committed_path("paper").exists():  # the GPU cells stay visibly empty
        assert "| SAMUeL (ours) | `paper` | — | — | — |" in page
        assert "--profile paper" in page


def test_tables_page_fills_the_paper_rows_from_a_committed_paper_run(tmp_path):
    demo = reproduce.load_committed("demo")
    write_json(tmp_path / "demo.json", demo)
    paper = json.loads(json.dumps(demo))
    paper["evaluation"]["efficiency"].update(parameters=15_000_000, device="cuda (A100)",
                                             ancestral_seconds_per_47s_clip=20.5)
    write_json(tmp_path / "paper.json", paper)
    page = reproduce.tables_page(tmp_path)
    assert "| SAMUeL (ours) | `paper`, cuda (A100) | 15,000,000 | 20.50 |" in page
