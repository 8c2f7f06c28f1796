"""samuel/checkpoint.py: safetensors + JSON checkpoints, written atomically, read back exactly,
and refused with a clear message when damaged (book: design §5)."""
from __future__ import annotations

import json
import struct

import pytest
import torch

from samuel import __version__, checkpoint as ckpt, config, model as model_mod, paths

FILES = [ckpt.META_FILE, ckpt.MODEL_FILE, ckpt.STATE_FILE]


def _stats(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {stem: {"mean": torch.randn(64, generator=g).tolist(),
                   "std": (torch.rand(64, generator=g) + 0.5).tolist()} for stem in ("vocal", "accomp")}


@pytest.fixture(scope="module")
def trained():
    """A smoke-size model after one AdamW step, and its training state as train.py saves it."""
    torch.manual_seed(0)
    cfg = config.load("smoke", seed=3)
    net = model_mod.build(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(2, 64, 32)
    loss = net(x, torch.tensor([5, 700]), torch.randn(2, 64, 32), None).pow(2).mean() + \
        sum(p.pow(2).sum() for p in net.parameters()) * 1e-6
    loss.backward()
    opt.step()
    opt_t, opt_meta = ckpt.optimizer_to_flat(opt.state_dict())
    state = {**{f"model.{k}": v for k, v in net.state_dict().items()}, **opt_t}
    return cfg, net, opt, state, {"optimizer": opt_meta, "step": 1}


def _save(folder, trained, **kw):
    cfg, net, _, state, meta = trained
    ckpt.save_checkpoint(folder, net, cfg, _stats(), info=kw.pop("info", {"step": 1, "val_loss": 0.5}),
                         state=state, state_meta=meta, **kw)


def test_round_trip_restores_weights_config_stats_and_outputs(tmp_path, trained):
    cfg, net, _, _, _ = trained
    _save(tmp_path / "ck", trained)
    loaded = ckpt.load_checkpoint(tmp_path / "ck")
    assert loaded.cfg == cfg and loaded.stats == _stats() and loaded.info == {"step": 1, "val_loss": 0.5}
    assert not loaded.model.training
    ours, theirs = net.state_dict(), loaded.model.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    net.eval()
    g = torch.Generator().manual_seed(1)
    x, vocals = torch.randn(1, 64, 32, generator=g), torch.randn(1, 64, 32, generator=g)
    t = torch.tensor([400])
    with torch.no_grad():
        assert torch.equal(net(x, t, vocals, None), loaded.model(x, t, vocals, None))


def test_files_are_safetensors_and_json_never_pickles(tmp_path, trained):
    _save(tmp_path / "ck", trained)
    folder = tmp_path / "ck"
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)  # no temp files left behind
    meta = json.loads((folder / ckpt.META_FILE).read_text())
    assert meta["format"] == 1 and meta["version"] == __version__ and meta["codec"] == "offline"
    assert meta["config"] == json.loads(trained[0].to_json()) and meta["stats"] == _stats()
    for name in (ckpt.MODEL_FILE, ckpt.STATE_FILE):
        raw = (folder / name).read_bytes()
        assert raw[:1] != b"\x80"  # a pickle starts with its protocol opcode
        (n,) = struct.unpack("<Q", raw[:8])  # safetensors: header length, then a JSON header
        header = {k: v for k, v in json.loads(raw[8:8 + n]).items() if k != "__metadata__"}
        assert header and all({"dtype", "shape", "data_offsets"} <= v.keys() for v in header.values())
        assert min(v["data_offsets"][0] for v in header.values()) == 0
        assert max(v["data_offsets"][1] for v in header.values()) == len(raw) - 8 - n


def test_training_state_and_optimizer_round_trip(tmp_path, trained):
    cfg, net, opt, state, meta = trained
    _save(tmp_path / "ck", trained)
    tensors, got_meta = ckpt.load_state(tmp_path / "ck")
    assert got_meta["step"] == 1 and tensors.keys() == state.keys()
    assert all(torch.equal(tensors[k], state[k]) for k in state)
    fresh = torch.optim.AdamW(model_mod.build(cfg).parameters(), lr=1e-3)
    fresh.load_state_dict(ckpt.optimizer_from_flat(tensors, got_meta["optimizer"]))
    want, have = opt.state_dict(), fresh.state_dict()
    assert want["state"].keys() == have["state"].keys() and len(want["state"]) > 0
    for idx, st in want["state"].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(have["state"][idx][k])), (idx, k)
    assert have["param_groups"][0]["lr"] == want["param_groups"][0]["lr"]
    assert tuple(have["param_groups"][0]["betas"]) == tuple(want["param_groups"][0]["betas"])


def test_a_later_save_without_weights_keeps_them_and_merges_info(tmp_path, trained):
    _save(tmp_path / "ck", trained)
    before = (tmp_path / "ck" / ckpt.MODEL_FILE).read_bytes()
    _save(tmp_path / "ck", trained, info={"last_step": 2}, write_model=False)
    assert (tmp_path / "ck" / ckpt.MODEL_FILE).read_bytes() == before
    assert ckpt.load_meta(tmp_path / "ck")["info"] == {"step": 1, "val_loss": 0.5, "last_step": 2}


def test_a_failed_write_leaves_the_previous_checkpoint_whole(tmp_path, trained, monkeypatch):
    _save(tmp_path / "ck", trained)
    before = {n: (tmp_path / "ck" / n).read_bytes() for n in FILES}

    def half_then_fail(tensors, path):
        with open(path, "wb") as f:
            f.write(b"\x00" * 100)  # a half-written file ...
        raise OSError("disk full")  # ... and the process dies

    monkeypatch.setattr(ckpt, "save_file", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        _save(tmp_path / "ck", trained)
    assert {n: (tmp_path / "ck" / n).read_bytes() for n in FILES} == before
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == sorted(FILES)
    assert ckpt.load_checkpoint(tmp_path / "ck").info["step"] == 1


def test_a_first_save_cut_short_is_not_taken_for_a_checkpoint(tmp_path, trained, monkeypatch):
    def no_json(path, obj):
        raise KeyboardInterrupt  # killed after the weights, before checkpoint.json

    monkeypatch.setattr(ckpt, "write_json", no_json)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path / "ck", trained)
    assert (tmp_path / "ck" / ckpt.MODEL_FILE).exists()
    with pytest.raises(ckpt.CheckpointError, match=r"ck: expected a SAMUeL checkpoint, found no checkpoint.json in it"):
        ckpt.load_checkpoint(tmp_path / "ck")


def test_missing_folder_or_files_are_named(tmp_path, trained):
    with pytest.raises(ckpt.CheckpointError, match=r"nowhere: expected a SAMUeL checkpoint, found no such folder"):
        ckpt.load_checkpoint(tmp_path / "nowhere")
    _save(tmp_path / "ck", trained)
    (tmp_path / "ck" / ckpt.MODEL_FILE).unlink()
    with pytest.raises(ckpt.CheckpointError, match=r"expected model.safetensors, found none"):
        ckpt.load_checkpoint(tmp_path / "ck")
    _save(tmp_path / "nostate", trained)
    meta = json.loads((tmp_path / "nostate" / ckpt.META_FILE).read_text())
    del meta["state"]
    (tmp_path / "nostate" / ckpt.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointError, match=r"expected a resumable training state"):
        ckpt.load_state(tmp_path / "nostate")


def _truncate(path, keep: int = 1000) -> None:
    """Cut a file to its first ``keep`` bytes, as a killed copy would leave it."""
    path.write_bytes(path.read_bytes()[:keep])


def test_truncated_weights_give_a_clear_error(tmp_path, trained):
    _save(tmp_path / "ck", trained)
    _truncate(tmp_path / "ck" / ckpt.MODEL_FILE)
    with pytest.raises(ckpt.CheckpointError, match=r"model.safetensors: expected safetensors weights, could not read them"):
        ckpt.load_checkpoint(tmp_path / "ck")


def test_damaged_json_gives_a_clear_error(tmp_path, trained):
    _save(tmp_path / "ck", trained)
    (tmp_path / "ck" / ckpt.META_FILE).write_text('{"format": 1, "config": ')
    with pytest.raises(ckpt.CheckpointError, match=r"checkpoint.json: expected JSON, found unreadable text"):
        ckpt.load_checkpoint(tmp_path / "ck")


@pytest.mark.parametrize("field, value", [
    ("mid_blocks", 2),  # more blocks: names the weights lack
    ("channels", [64, 64, 96, 128]),  # the same names, other shapes
])
def test_weights_of_another_configuration_are_refused(tmp_path, trained, field, value):
    _save(tmp_path / "ck", trained)
    meta = json.loads((tmp_path / "ck" / ckpt.META_FILE).read_text())
    meta["config"]["model"][field] = value
    (tmp_path / "ck" / ckpt.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ckpt.CheckpointError, match=r"model.safetensors: weights do not match the "
                                                   r"configuration in checkpoint.json"):
        ckpt.load_checkpoint(tmp_path / "ck")


def test_truncated_training_state_gives_a_clear_error(tmp_path, trained):
    _save(tmp_path / "ck", trained)
    _truncate(tmp_path / "ck" / ckpt.STATE_FILE)
    with pytest.raises(ckpt.CheckpointError, match=r"state.safetensors: expected safetensors"):
        ckpt.load_state(tmp_path / "ck")



# ----------------------------------------------------------------------------- one resolver
def test_resolve_finds_the_model_however_it_is_given(tmp_path, trained):
    cfg, model = trained[0], trained[1]
    _save(tmp_path / "ck", trained)
    from_folder = ckpt.resolve(tmp_path / "ck")
    assert from_folder.folder == tmp_path / "ck" and from_folder.cfg == cfg
    assert ckpt.resolve(from_folder) is from_folder  # a loaded checkpoint as is
    bare = ckpt.resolve(model, cfg=cfg)
    assert bare.model is model and bare.folder is None and bare.info == {"source": "module"}
    assert not bare.model.training
    with pytest.raises(ckpt.CheckpointError, match="a bare model: expected its configuration"):
        ckpt.resolve(model)


def test_resolve_names_a_missing_folder_and_how_to_make_one(tmp_path, tmp_runs):
    with pytest.raises(ckpt.CheckpointError, match=r"nope: expected a SAMUeL checkpoint, found no "
                       r"such folder; pass --checkpoint DIR of a folder written by `samuel train`$"):
        ckpt.resolve(tmp_path / "nope")
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.resolve(None, profile="smoke")
    assert str(err.value) == (f"{paths.run_dir('smoke') / 'checkpoint'}: expected a SAMUeL checkpoint,"
                              " found no such folder; build it first with `samuel train --profile "
                              "smoke`, or pass --checkpoint DIR")
    (tmp_path / "empty").mkdir()  # a folder that is no checkpoint: load_checkpoint's message
    with pytest.raises(ckpt.CheckpointError, match=r"empty: expected a SAMUeL checkpoint, found no "
                       r"checkpoint.json in it"):
        ckpt.resolve(tmp_path / "empty")
