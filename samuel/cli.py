"""``samuel …`` commands. Each is a thin wrapper over a package function.

    samuel data build --profile demo [--out DIR] [--songlist CSV]
    samuel data popdb DIR [--out OUT] [--block-rows 64] [--download]
    samuel synth --out DIR [--songs N] [--seconds S]
    samuel train --profile demo [--resume]
    samuel evaluate --profile demo [--json]
    samuel evaluate --real [--profile demo] [--checkpoint DIR] [--json]
    samuel generate VOCALS -o ACCOMP.wav [--mix MIX.wav] [--checkpoint DIR] ...
    samuel bench model --profile paper [--device cuda] [--json]
    samuel bench codec
    samuel bench generate [--json]
    samuel bench gpu [--json]
    samuel book run --profile demo
    samuel book run --profile paper --songlist CSV | --popdb DIR [--vae DIR] [--device D] [--set K=V]
    samuel book check --profile demo [--run-dir DIR]
    samuel book links

Book: "Reproduce it" (the commands, stage by stage).
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def _overrides(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE (e.g. train__max_steps=100)")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _device_overrides(args) -> dict:
    """``--device`` / ``--vae`` as configuration overrides (``device``, ``data__vae``)."""
    out = {}
    if getattr(args, "device", None):
        out["device"] = args.device
    if getattr(args, "vae", None):
        out["data__vae"] = args.vae
    return out


def _cfg(args):
    from . import config

    return config.load(args.profile, **{**_overrides(getattr(args, "set", None)),
                                        **_device_overrides(args)})


def _add_profile(p, default="demo"):
    p.add_argument("--profile", default=default, choices=["smoke", "demo", "paper"])
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a configuration field, e.g. --set train__max_steps=100")


def _add_device(p, vae: bool = True):
    p.add_argument("--device", help="where torch runs: auto (default: CUDA when available), cpu, "
                   "cuda, cuda:N (the configuration field device)")
    if vae:
        p.add_argument("--vae", metavar="PATH", help="a local Stable Audio Open VAE folder (the "
                       "configuration field data__vae; default $SAMUEL_VAE, then the hub)")


def cmd_data_build(args):
    from .data.pipeline import build

    summary = build(_cfg(args), out_dir=args.out, songlist=args.songlist, limit=args.limit,
                    separator_repo=args.separator_repo, retry_failed=args.retry_failed)
    print(json.dumps(summary, indent=2, default=str))


def cmd_data_popdb(args):
    from .data import popdb

    if args.dir is None and not args.download:
        raise ValueError("expected DIR, the folder holding the published latent_vocal.npy and "
                         "latent_accomp.npy, or --download")
    src = popdb.download(args.dir) if args.download else args.dir
    summary = popdb.prepare(src, out=args.out, cfg=_cfg(args), block_rows=args.block_rows)
    print(json.dumps(summary, indent=2) if args.json else popdb.format_summary(summary))


def cmd_synth(args):
    from .data.synth import render_corpus

    recs = render_corpus(args.out, args.songs, args.seconds, seed=args.seed, backend=args.backend)
    print(f"{len(recs)} songs in {args.out}")


def cmd_train(args):
    from .train import train

    summary = train(_cfg(args), data_dir=args.data, resume=args.resume)
    print(json.dumps(summary, indent=2))


def cmd_evaluate(args):
    from . import evaluate

    if args.real:  # the real recordings (samuel.evaluate.real); one line without them
        from .evaluate import real

        # --data: the training corpus whose own accompaniment is scored for roughness beside
        res = real.evaluate_real(_cfg(args), checkpoint=args.checkpoint, corpus=args.data or "auto")
        print(json.dumps(res, indent=2, default=str) if args.json else real.format_real(res))
        return 0
    kw = dict(checkpoint=args.checkpoint, data_dir=args.data, max_clips=args.max_clips,
              audiobox_checkpoint=args.audiobox)
    results = evaluate.evaluate(_cfg(args), **{k: v for k, v in kw.items() if v is not None})
    print(json.dumps(results, indent=2, default=str) if args.json else evaluate.format_table(results))


def cmd_generate(args):
    from . import generate

    result = generate.generate(args.vocals, args.out, mix_path=args.mix, checkpoint=args.checkpoint,
                               steps=args.steps, cfg_scale=args.cfg_scale, seed=args.seed,
                               codec=args.codec, progress=not args.no_progress,
                               overlap_frames=args.overlap_frames, device=args.device, vae=args.vae)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    t = result["timings"]
    print(f"{result['out']}: {result['seconds']:.1f} s, {result['windows']} window(s), "
          f"{result['steps']} steps, cfg {result['cfg_scale']:g}; encode {t['encode_s']:.1f} s, "
          f"sample {t['sample_s']:.1f} s, decode {t['decode_s']:.1f} s")
    if result["mix"]:
        print(f"{result['mix']}: vocal + accompaniment")
    if result["seam"]:
        s = result["seam"]
        print(f"seams: boundary flux {s['boundary_flux']:.2f} vs within-window {s['within_flux']:.2f}")
    return 0


def cmd_bench(args):
    from . import bench

    if args.what == "model":
        res = bench.bench_model(_cfg(args), threads=args.threads, device=args.device or "cpu")
        print(json.dumps(res, indent=2) if args.json else bench.format_model(res))
    elif args.what == "gpu":
        res = bench.bench_gpu(_cfg(args), device=args.device or "cuda", progress=not args.json)
        print(json.dumps(res, indent=2) if args.json else bench.format_gpu(res))
    elif args.what == "generate":
        # the paper profile is the default of the other benchmarks; generate's model is demo's
        res = bench.bench_generate(seconds=args.seconds or 180.0, checkpoint=args.checkpoint,
                                   profile="demo" if args.profile == "paper" else args.profile,
                                   threads=args.threads or 2)
        print(json.dumps(res, indent=2) if args.json else bench.format_generate(res))
    else:
        res = bench.bench_codec(seconds=args.seconds or 30.0)
        print(json.dumps(res, indent=2) if args.json else bench.format_codec(res))


def cmd_book_check(args):
    from . import reproduce

    argv = ["check", "--profile", args.profile]
    argv += ["--run-dir", args.run_dir] if args.run_dir else []
    argv += ["--committed", args.committed] if args.committed else []
    return reproduce.main(argv)


def cmd_book_links(args):
    from . import site

    return site.main([])


def cmd_book(args):
    from . import book

    book.run(args.profile, run_dir=args.run_dir, html=not args.no_html, seed=args.seed,
             overrides=_overrides(args.set) or None, songlist=args.songlist, popdb=args.popdb,
             vae=args.vae, device=args.device)


def parser() -> argparse.ArgumentParser:
    """The ``samuel`` command line: one sub-command group per builder below."""
    ap = argparse.ArgumentParser(prog="samuel", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for add in (_data_parsers, _model_parsers, _generate_parser, _bench_parser, _book_parsers):
        add(sub)
    return ap


def _data_parsers(sub) -> None:
    """``samuel data build|popdb`` and ``samuel synth``."""
    data = sub.add_parser("data", help="the data stage").add_subparsers(dest="action", required=True)
    p = data.add_parser("build", help="song list or offline corpus -> POPDB latents (resumable)")
    _add_profile(p)
    p.add_argument("--out", help="output folder (default runs/<profile>/data)")
    p.add_argument("--songlist", help="a CSV of songs (title, artist); default: the offline corpus")
    p.add_argument("--limit", type=int)
    p.add_argument("--separator-repo", help="a local folder of Demucs weights")
    p.add_argument("--retry-failed", action="store_true")
    _add_device(p)
    p.set_defaults(func=cmd_data_build)
    p = data.add_parser("popdb", help="index the published POPDB for training and evaluation "
                        "(train/val/test by seeded blocks of rows; nothing copied)")
    p.add_argument("dir", nargs="?", help="the folder holding latent_vocal.npy and latent_accomp.npy "
                   "(or one folder up); with --download, where to download to")
    _add_profile(p, default="paper")
    p.add_argument("--out", help="the index folder (default runs/<profile>/data/popdb)")
    p.add_argument("--block-rows", type=int, help="rows per block of the split (default 64, or "
                   "that of an index already in --out)")
    p.add_argument("--download", action="store_true", help="first download it from Kaggle "
                   "(kagglehub; needs the network)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_popdb)

    p = sub.add_parser("synth", help="render the offline corpus of synthetic songs")
    p.add_argument("--out", required=True)
    p.add_argument("--songs", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="auto", choices=["auto", "fluidsynth", "builtin"])
    p.set_defaults(func=cmd_synth)


def _model_parsers(sub) -> None:
    """``samuel train`` and ``samuel evaluate``."""
    p = sub.add_parser("train", help="train the model (design §5)")
    _add_profile(p)
    p.add_argument("--data", help="POPDB folder with train/ and val/ (default runs/<profile>/data/popdb)")
    p.add_argument("--resume", action="store_true", help="continue a killed run exactly")
    _add_device(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="fit metrics vs baselines, samplers, Table II (design §7)")
    _add_profile(p)
    p.add_argument("--checkpoint")
    p.add_argument("--data")
    p.add_argument("--max-clips", type=int)
    p.add_argument("--audiobox", metavar="PATH",
                   help="AudioBox-Aesthetics weights for paper Table I: a folder with config.json + "
                        "model.safetensors, or checkpoint.pt (default $SAMUEL_AUDIOBOX_CKPT, then the hub)")
    p.add_argument("--real", action="store_true",
                   help="evaluate on the real recordings of the Debian package "
                        "fretsonfire-songs-muldjord (or $SAMUEL_FOF) instead of the test split")
    p.add_argument("--json", action="store_true")
    _add_device(p)
    p.set_defaults(func=cmd_evaluate)


def _generate_parser(sub) -> None:
    """``samuel generate``: its arguments are :func:`samuel.generate.generate`'s."""
    p = sub.add_parser("generate", help="vocal file -> accompaniment (and mix)")
    p.add_argument("vocals", help="the vocal: any common audio file, any rate, mono or stereo")
    p.add_argument("-o", "--out", required=True, help="the accompaniment to write (.wav/.flac/.ogg)")
    p.add_argument("--mix", help="also write vocal + accompaniment here")
    p.add_argument("--checkpoint", help="checkpoint folder (default runs/demo/checkpoint)")
    p.add_argument("--steps", type=int, help="sampler steps (default: the checkpoint's fast_steps)")
    p.add_argument("--cfg", type=float, dest="cfg_scale", help="guidance scale (default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--codec", choices=["sao", "offline"], help="override the checkpoint's codec")
    p.add_argument("--vae", metavar="PATH", help="a local Stable Audio Open VAE folder "
                   "(default $SAMUEL_VAE, then the hub)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    p.add_argument("--overlap", type=int, dest="overlap_frames",
                   help="latent frames shared by consecutive windows (default a quarter window)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_generate)


def _bench_parser(sub) -> None:
    """``samuel bench model|codec|generate|gpu``."""
    p = sub.add_parser("bench", help="benchmarks that print numbers")
    p.add_argument("what", choices=["model", "codec", "generate", "gpu"],
                   help="model: the U-Net (CPU targets); codec: the offline codec; generate: "
                   "`samuel generate` on a 3-minute vocal, stage by stage; gpu: the GPU check")
    _add_profile(p, default="paper")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--device", help="model: cpu (default) or cuda; gpu: cuda (default) or cuda:N")
    p.add_argument("--seconds", type=float, default=None,
                   help="codec: audio length (default 30); generate: vocal length (default 180)")
    p.add_argument("--checkpoint", help="generate: a checkpoint folder (default runs/demo/checkpoint, "
                   "else a random demo-size model)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)


def _book_parsers(sub) -> None:
    """``samuel book run|check|links``."""
    book = sub.add_parser("book", help="the book").add_subparsers(dest="action", required=True)
    p = book.add_parser("run", help="execute the notebooks in order with papermill, then build the HTML")
    _add_profile(p)
    p.add_argument("--run-dir")
    p.add_argument("--seed", type=int, default=0, help="seeds data, model and sampling (SEED)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--songlist", metavar="CSV",
                        help="collect the data from a song list (title, artist; SONGLIST)")
    source.add_argument("--popdb", metavar="DIR",
                        help="train on the published POPDB's two arrays in DIR (POPDB)")
    p.add_argument("--no-html", action="store_true")
    _add_device(p)
    p.set_defaults(func=cmd_book)
    p = book.add_parser("check", help="compare a run's recorded results with the committed ones "
                        "(book/results/<profile>.json): exit 1 on any mismatch")
    _add_profile(p)
    p.add_argument("--run-dir", help="default runs/<profile>")
    p.add_argument("--committed", help="default book/results/<profile>.json")
    p.set_defaults(func=cmd_book_check)
    p = book.add_parser("links", help="rewrite every badge, Colab link and install cell from the "
                        "repository setting (pyproject.toml [project.urls] Repository), then check")
    p.set_defaults(func=cmd_book_links)


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1") if os.environ.get("SAMUEL_OFFLINE") else None
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # one clear sentence for errors users can fix
        from .audio import AudioError
        from .checkpoint import CheckpointError

        known = (AudioError, CheckpointError, FileNotFoundError, ValueError)
        extra = []
        try:
            from .codecs import CodecUnavailable
            extra.append(CodecUnavailable)
        except ImportError:
            pass
        try:
            from .book import NotebookFailed
            extra.append(NotebookFailed)
        except ImportError:
            pass
        try:
            from .data.separate import SeparatorUnavailable
            extra.append(SeparatorUnavailable)
        except ImportError:
            pass
        if isinstance(e, known + tuple(extra)) and not os.environ.get("SAMUEL_DEBUG"):
            print(f"samuel {args.command}: {e}", file=sys.stderr)
            return 2
        raise
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
