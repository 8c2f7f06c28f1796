"""Training with several processes (gloo, 2 processes on the CPU): the early-stopping decision
reaches every rank, every rank's random state is saved, and a killed run resumes exactly on
each rank. Book: "Reproduce it" (several GPUs)."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from samuel import train as train_mod

from test_train import _fake_popdb

WORKER = r'''
import json, os, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from samuel import config, train as train_mod

args = json.loads(sys.argv[1])
rank = int(os.environ["RANK"])
if args.get("accelerator_bookkeeping"):
    train_mod._feeds_accelerator = lambda device: True
cfg = config.load("smoke", device="cpu", **args["overrides"])
out = Path(args["out"]) / f"rank{rank}.json"
losses = {}

class Kill(Exception):
    pass

def on_step(step, loss):
    losses[step] = loss
    if step == args.get("kill_at"):
        raise Kill

try:
    summary = train_mod.train(cfg, data_dir=args["data"], run_dir=args["run"], resume=args["resume"],
                              progress=False, on_step=on_step)
    killed = False
except Kill:
    summary, killed = None, True
out.write_text(json.dumps({"losses": losses, "summary": summary, "killed": killed}))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path: Path, name: str, **args) -> list:
    """Run the worker as 2 processes (env WORLD_SIZE/RANK/MASTER_*); each rank's JSON + stdout."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / f"out-{name}"
    out.mkdir()
    args = {"out": str(out), "resume": False, **args}
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "WORLD_SIZE": "2", "RANK": str(rank), "LOCAL_RANK": str(rank),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(script), json.dumps(args)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for rank, p in enumerate(procs):
        try:
            stdout, stderr = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        assert p.returncode == 0, f"rank {rank}: {stderr[-3000:]}"
        res = json.loads((out / f"rank{rank}.json").read_text())
        res["losses"] = {int(k): v for k, v in res["losses"].items()}
        res["stdout"] = stdout
        results.append(res)
    return results


def _overrides(**kw):
    base = dict(max_steps=12, eval_every=4, patience=100, batch_size=4)
    base.update(kw)
    return base


def test_early_stop_decision_reaches_every_rank(tmp_path):
    data = _fake_popdb(tmp_path / "popdb")
    ranks = _launch(tmp_path, "stop", data=str(data), run=str(tmp_path / "run"),
                    overrides=_overrides(lr=0.0, max_steps=40, eval_every=2, patience=2))
    steps = [r["summary"]["steps"] for r in ranks]
    assert steps[0] == steps[1] < 40
    # rank 1 never validates: it stops because rank 0's flag was broadcast to it
    assert ranks[0]["summary"]["stopped_early"] and ranks[1]["summary"]["stopped_early"]
    assert max(ranks[1]["losses"]) == steps[1]
    # the batch and learning-rate rule is printed once, by rank 0
    assert "2 process(es) x batch 4 = 8 rows per optimiser step" in ranks[0]["stdout"]
    assert "rows per optimiser step" not in ranks[1]["stdout"]
    assert ranks[0]["summary"]["rows_per_step"] == 8


@pytest.mark.slow
@pytest.mark.parametrize("bookkeeping", ["cpu", "accelerator"])
def test_killed_run_resumes_exactly_on_every_rank(tmp_path, bookkeeping):
    """Killed at step 6 (last checkpoint at step 4) and resumed: each rank's losses of steps
    5 … 12 equal the uninterrupted run's. ``accelerator``: the GPU's bookkeeping (noise from
    its own generator, batches read ahead by a thread) run on the CPU."""
    data = _fake_popdb(tmp_path / "popdb")
    common = dict(data=str(data), overrides=_overrides(),
                  accelerator_bookkeeping=bookkeeping == "accelerator")
    full = _launch(tmp_path, "full", run=str(tmp_path / "a"), **common)
    killed = _launch(tmp_path, "killed", run=str(tmp_path / "b"), kill_at=6, **common)
    assert all(r["killed"] for r in killed)
    state = load_file(str(tmp_path / "b" / "checkpoint" / "state.safetensors"))
    rng = sorted(k for k in state if k.startswith("rng"))
    expected = ["rng.0", "rng.1"] + (["rng_dev.0", "rng_dev.1"] if bookkeeping == "accelerator" else [])
    assert rng == expected
    assert not torch.equal(state["rng.0"], state["rng.1"])  # each rank's own generator
    resumed = _launch(tmp_path, "resumed", run=str(tmp_path / "b"), resume=True, **common)
    for rank in range(2):
        got = resumed[rank]["losses"]
        assert min(got) == 5 and max(got) == 12
        for s in range(5, 13):
            assert got[s] == full[rank]["losses"][s], (rank, s, got[s], full[rank]["losses"][s])
    # the ranks saw different rows, so their losses differ
    assert full[0]["losses"] != full[1]["losses"]
    a = load_file(str(tmp_path / "a" / "checkpoint" / "state.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint" / "state.safetensors"))
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


class _StubDist:
    def __init__(self, backend):
        self.backend = backend

    def get_backend(self):
        return self.backend


def test_collective_tensors_live_on_the_backend_device():
    assert train_mod._comm_device(_StubDist("nccl"), "cuda:1") == "cuda:1"
    assert train_mod._comm_device(_StubDist("gloo"), "cuda:1") == "cpu"
    assert train_mod._comm_device(None, "cuda") == "cpu"
    g = torch.Generator().manual_seed(3)
    assert torch.equal(train_mod._gather_states(None, 1, "cpu", g.get_state())[0], g.get_state())
