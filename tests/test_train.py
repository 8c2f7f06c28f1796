"""design §5 training: resume exactness, checkpoints, curves, early stopping, DDP on gloo."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from samuel import checkpoint as ckpt, config
from samuel.data.store import write_split
from samuel.train import lr_lambda, read_curves, train


def _fake_popdb(root: Path, t=32, rows=(24, 8)):
    """A tiny POPDB: accompaniment = a function of the vocal, so there is something to learn."""
    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val"), rows):
        folder = root / split
        folder.mkdir(parents=True)
        v = rng.standard_normal((n, 64, t)).astype(np.float32)
        a = (0.8 * np.roll(v, 1, axis=1) + 0.2 * rng.standard_normal((n, 64, t))).astype(np.float32)
        np.save(folder / "latent_vocal.npy", v)
        np.save(folder / "latent_accomp.npy", a)
    return root


def _cfg(**kw):
    base = dict(max_steps=12, eval_every=4, patience=100, batch_size=4)
    base.update(kw)
    return config.load("smoke", **base)


def test_lr_schedule_warms_up_then_anneals_to_zero():
    assert lr_lambda(0, 10, 100) == pytest.approx(0.1)
    assert lr_lambda(9, 10, 100) == pytest.approx(1.0)
    assert lr_lambda(55, 10, 100) == pytest.approx(0.5, abs=1e-6)
    assert lr_lambda(100, 10, 100) == pytest.approx(0.0, abs=1e-9)


def test_checkpoint_is_safetensors_plus_json_and_loads(tmp_path):
    data = _fake_popdb(tmp_path / "popdb")
    summary = train(_cfg(), data_dir=data, run_dir=tmp_path / "run", progress=False)
    ck = Path(summary["checkpoint"])
    assert sorted(p.name for p in ck.iterdir()) == ["checkpoint.json", "model.safetensors", "state.safetensors"]
    meta = json.loads((ck / "checkpoint.json").read_text())
    assert meta["config"]["profile"] == "smoke" and len(meta["stats"]["accomp"]["mean"]) == 64
    loaded = ckpt.load_checkpoint(ck)
    assert not loaded.model.training
    ema = load_file(str(ck / "state.safetensors"))
    # the sampling model is an EMA copy, not the raw weights
    w = "conv_in.weight"
    assert not torch.equal(ema[f"model.{w}"], ema[f"ema.{w}"])
    rows = read_curves(tmp_path / "run")
    assert [r["step"] for r in rows] == [4, 8, 12]
    assert all(np.isfinite(r["val_loss"]) for r in rows)
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    # nothing in the checkpoint is a pickle
    for p in ck.iterdir():
        assert not p.read_bytes().startswith(b"\x80")


def test_resume_continues_exactly(tmp_path):
    data = _fake_popdb(tmp_path / "popdb")
    full = []
    train(_cfg(), data_dir=data, run_dir=tmp_path / "a", progress=False,
          on_step=lambda s, l: full.append(l))

    class Kill(Exception):
        pass

    def killer(step, loss):
        if step == 6:  # killed after step 6; the last save was at step 4
            raise Kill

    with pytest.raises(Kill):
        train(_cfg(), data_dir=data, run_dir=tmp_path / "b", progress=False, on_step=killer)
    resumed = {}
    train(_cfg(), data_dir=data, run_dir=tmp_path / "b", resume=True, progress=False,
          on_step=lambda s, l: resumed.setdefault(s, l))
    assert min(resumed) == 5
    for s in range(5, 13):
        assert resumed[s] == full[s - 1], (s, resumed[s], full[s - 1])
    a = load_file(str(tmp_path / "a" / "checkpoint" / "state.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint" / "state.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_stops_on_a_flat_validation_loss(tmp_path):
    data = _fake_popdb(tmp_path / "popdb")
    summary = train(_cfg(lr=0.0, max_steps=40, eval_every=2, patience=2), data_dir=data,
                    run_dir=tmp_path / "run", progress=False)
    assert summary["stopped_early"] and summary["steps"] < 40


def test_wrong_chunk_length_is_a_clear_error(tmp_path):
    data = _fake_popdb(tmp_path / "popdb", t=16)
    with pytest.raises(ValueError, match="expected chunks of 32 frames"):
        train(_cfg(), data_dir=data, run_dir=tmp_path / "run", progress=False)


@pytest.mark.slow
def test_distributed_data_parallel_on_gloo_two_processes(tmp_path):
    data = _fake_popdb(tmp_path / "popdb")
    script = tmp_path / "ddp.py"
    script.write_text(
        "import sys, torch\n"
        "from samuel import config\nfrom samuel.train import train\n"
        "cfg = config.load('smoke', max_steps=4, eval_every=2, batch_size=2)\n"
        f"train(cfg, data_dir={str(data)!r}, run_dir={str(tmp_path / 'run')!r}, progress=False)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                        "--master_port=29533", str(script)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").exists()


def _kill_and_resume(cfg, data, run_dir, kill_at, between=None) -> dict:
    """Train ``cfg`` until it is killed after step ``kill_at``, call ``between(run_dir)``, then
    resume; returns ``{step: loss}`` of the resumed run."""
    def killer(step, loss):
        if step == kill_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, data_dir=data, run_dir=run_dir, progress=False, on_step=killer)
    if between is not None:
        between(run_dir)
    resumed = {}
    train(cfg, data_dir=data, run_dir=run_dir, resume=True, progress=False,
          on_step=lambda s, l: resumed.setdefault(s, l))
    return resumed


def test_transposition_augmentation_trains_and_resumes_exactly(tmp_path):
    """train.transpose shifts vocal and accompaniment together; its draws come from the saved
    generator, so a resumed run still repeats the uninterrupted one."""
    data = _fake_popdb(tmp_path / "popdb")
    full = []
    train(_cfg(transpose=3), data_dir=data, run_dir=tmp_path / "a", progress=False,
          on_step=lambda s, l: full.append(l))
    plain = []
    train(_cfg(), data_dir=data, run_dir=tmp_path / "p", progress=False,
          on_step=lambda s, l: plain.append(l))
    assert full != plain  # the augmentation changes what the model sees

    resumed = _kill_and_resume(_cfg(transpose=3), data, tmp_path / "b", kill_at=5)
    assert [resumed[s] for s in range(5, 13)] == full[4:12]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 12-step run's checkpoint folder (shared; copy it before changing it)."""
    root = tmp_path_factory.mktemp("trained")
    data = _fake_popdb(root / "popdb")
    train(_cfg(), data_dir=data, run_dir=root / "run", progress=False)
    return root / "run" / "checkpoint"


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
@pytest.mark.parametrize("device", ["cpu", "meta", "cuda"])
def test_optimizer_state_after_resume_is_placed_as_torch_places_it(trained, device):
    """Moments beside their parameters; AdamW's ``step`` counters where torch's own
    ``load_state_dict`` rule puts them: on the CPU for the default AdamW, beside the parameters
    for the fused one (training's; the saved hyperparameters include the form, so the restored
    optimiser is fused too). ``meta`` stands in for a GPU where there is none: a restore that
    moved every tensor to the device would put the default form's counters there."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    from samuel.model import build
    from samuel.train import restore

    ck = trained
    saved = load_file(str(ck / "state.safetensors"))
    cfg = _cfg()
    model = build(cfg).to(device)
    ema = build(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    g = torch.Generator()
    meta = restore(ck, model, ema, opt, sched, g, g)
    assert meta["step"] == 12 and meta["world_size"] == 1
    assert torch.equal(g.get_state(), saved["rng.0"])
    assert len(opt.state) == len(list(model.parameters()))
    fused = bool(opt.param_groups[0].get("fused"))
    assert fused  # the trained run's optimiser was the fused one
    for idx, p in enumerate(model.parameters()):
        st = opt.state[p]
        assert st["step"].device.type == (p.device.type if fused else "cpu") and st["step"].dim() == 0
        if st["step"].device.type != "meta":
            assert float(st["step"]) == 12.0
        for k in ("exp_avg", "exp_avg_sq"):
            assert st[k].device == p.device and st[k].dtype == p.dtype
            if device != "meta":
                assert torch.equal(st[k].cpu(), saved[f"opt.{idx}.{k}"])
    if device != "meta":
        w = "conv_in.weight"
        assert torch.equal(model.state_dict()[w].cpu(), saved[f"model.{w}"])
        assert torch.equal(ema.state_dict()[w].cpu(), saved[f"ema.{w}"])


def test_a_bad_rng_state_is_a_clear_error(trained, tmp_path):
    import shutil

    from samuel.checkpoint import CheckpointError, save_tensors
    from samuel.model import build
    from samuel.train import restore

    ck = Path(shutil.copytree(trained, tmp_path / "checkpoint"))
    saved = load_file(str(ck / "state.safetensors"))
    save_tensors(ck / "state.safetensors", {**saved, "rng.0": torch.zeros(7, dtype=torch.uint8)})
    cfg = _cfg()
    model, ema = build(cfg), build(cfg)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    g = torch.Generator()
    with pytest.raises(CheckpointError, match=r"state.safetensors: rng.0: expected the state of a cpu generator, found 7 bytes"):
        restore(ck, model, ema, opt, sched, g, g)


def test_batches_read_ahead_are_the_batches_read_in_step_order():
    """The background reader (used on a GPU) hands out the same rows in the same order as the
    in-loop reader, and reports the generator state right after each batch it hands out."""
    from samuel.train import Batches

    rng = np.random.default_rng(0)
    v = rng.standard_normal((50, 4, 8)).astype(np.float32)
    a = rng.standard_normal((50, 4, 8)).astype(np.float32)
    g_sync, g_ahead = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    sync = Batches(v, a, 6, g_sync, "cpu", ahead=0)
    ahead = Batches(v, a, 6, g_ahead, "cpu", ahead=3)
    try:
        for _ in range(10):
            vs, as_ = sync.next()
            va, aa = ahead.next()
            assert torch.equal(vs, va) and torch.equal(as_, aa)
            # the reader is ahead of the loop, but the state to save is the loop's
            assert torch.equal(ahead.state(), sync.state())
    finally:
        ahead.close()
    assert not ahead._thread.is_alive()


def test_resume_is_exact_with_the_accelerator_bookkeeping(tmp_path, monkeypatch):
    """On a GPU the noise comes from a generator on the device and batches are read ahead by a
    thread; both states are saved (``rng.0``, ``rng_dev.0``). Run here on the CPU."""
    import samuel.train as train_mod

    data = _fake_popdb(tmp_path / "popdb")
    cpu_way = []
    train(_cfg(), data_dir=data, run_dir=tmp_path / "c", progress=False,
          on_step=lambda s, l: cpu_way.append(l))
    monkeypatch.setattr(train_mod, "_feeds_accelerator", lambda device: True)
    full = []
    train(_cfg(), data_dir=data, run_dir=tmp_path / "a", progress=False,
          on_step=lambda s, l: full.append(l))
    assert full != cpu_way  # the noise has its own generator now

    def check_state(run_dir):
        state = load_file(str(run_dir / "checkpoint" / "state.safetensors"))
        assert {"rng.0", "rng_dev.0"} <= set(state) and "rng.1" not in state

    resumed = _kill_and_resume(_cfg(), data, tmp_path / "b", kill_at=7, between=check_state)
    assert [resumed[s] for s in range(5, 13)] == full[4:12]


def test_the_fused_adamw_makes_the_default_adamws_updates():
    """Training's optimiser (:func:`samuel.train.adamw`, fused) against torch's default AdamW
    on a CPU: the same parameters after several steps, within float rounding."""
    from samuel import diffusion
    from samuel.model import build
    from samuel.train import adamw

    cfg = _cfg()
    torch.manual_seed(0)
    a = build(cfg)
    b = build(cfg)
    b.load_state_dict(a.state_dict())
    init = [p.detach().clone() for p in a.parameters()]
    opt_a = adamw(a.parameters(), cfg.train)
    opt_b = torch.optim.AdamW(b.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                              foreach=False)
    assert opt_a.defaults.get("fused") is True
    sched = diffusion.Schedule.from_config(cfg)
    x = torch.randn(4, 64, cfg.data.chunk_frames, generator=torch.Generator().manual_seed(1))
    v = torch.randn(4, 64, cfg.data.chunk_frames, generator=torch.Generator().manual_seed(2))
    for step in range(5):
        for m, opt in ((a, opt_a), (b, opt_b)):
            loss = diffusion.training_loss(m, sched, x, v, 0.1, torch.Generator().manual_seed(step))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    # within 1 % of one step's size (AdamW moves a weight by about lr per step; where a gradient
    # is near zero, m/sqrt(v) amplifies the rounding of the two forms: 2e-6 seen at lr 1e-3)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-2 * cfg.train.lr, msg=name)
    moved = max(float((pa.detach() - p0).abs().max()) for pa, p0 in zip(a.parameters(), init))
    assert moved > 1e-4  # the steps did change the weights
