"""``samuel …`` commands. Each is a thin wrapper over a package function.

    samuel data build --profile demo [--out DIR] [--songlist CSV]
    samuel synth --out DIR [--songs N] [--seconds S]
    samuel train --profile demo [--resume]
    samuel evaluate --profile demo [--json]
    samuel generate VOCALS -o ACCOMP.wav [--mix MIX.wav] [--checkpoint DIR] ...
    samuel bench model --profile paper [--json]
    samuel bench codec
    samuel book run --profile demo
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


def _cfg(args):
    from . import config

    return config.load(args.profile, **_overrides(getattr(args, "set", None)))


def _add_profile(p, default="demo"):
    p.add_argument("--profile", default=default, choices=["smoke", "demo", "paper"])
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a configuration field, e.g. --set train__max_steps=100")


def cmd_data_build(args):
    from .data.pipeline import build

    summary = build(_cfg(args), out_dir=args.out, songlist=args.songlist, limit=args.limit,
                    separator_repo=args.separator_repo, retry_failed=args.retry_failed)
    print(json.dumps(summary, indent=2, default=str))


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

    kw = dict(checkpoint=args.checkpoint, data_dir=args.data, max_clips=args.max_clips)
    results = evaluate.evaluate(_cfg(args), **{k: v for k, v in kw.items() if v is not None})
    print(json.dumps(results, indent=2, default=str) if args.json else evaluate.format_table(results))


def cmd_generate(args):
    from . import generate

    return generate.main(args)


def cmd_bench(args):
    from . import bench

    if args.what == "model":
        res = bench.bench_model(_cfg(args), threads=args.threads)
        print(json.dumps(res, indent=2) if args.json else bench.format_model(res))
    else:
        res = bench.bench_codec(seconds=args.seconds)
        print(json.dumps(res, indent=2) if args.json else bench.format_codec(res))


def cmd_book(args):
    from . import book

    book.run(args.profile, run_dir=args.run_dir, html=not args.no_html)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="samuel", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="the data stage").add_subparsers(dest="action", required=True)
    p = data.add_parser("build", help="song list or offline corpus -> POPDB latents (resumable)")
    _add_profile(p)
    p.add_argument("--out", help="output folder (default runs/<profile>/data)")
    p.add_argument("--songlist", help="a CSV of songs (title, artist); default: the offline corpus")
    p.add_argument("--limit", type=int)
    p.add_argument("--separator-repo", help="a local folder of Demucs weights")
    p.add_argument("--retry-failed", action="store_true")
    p.set_defaults(func=cmd_data_build)

    p = sub.add_parser("synth", help="render the offline corpus of synthetic songs")
    p.add_argument("--out", required=True)
    p.add_argument("--songs", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="auto", choices=["auto", "fluidsynth", "builtin"])
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train the model (SPEC §5)")
    _add_profile(p)
    p.add_argument("--data", help="POPDB folder with train/ and val/ (default runs/<profile>/data/popdb)")
    p.add_argument("--resume", action="store_true", help="continue a killed run exactly")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="fit metrics vs baselines, samplers, Table II (SPEC §7)")
    _add_profile(p)
    p.add_argument("--checkpoint")
    p.add_argument("--data")
    p.add_argument("--max-clips", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("generate", help="vocal file -> accompaniment (and mix)")
    try:
        from . import generate

        generate.add_arguments(p)
    except ImportError:  # pragma: no cover
        pass
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("bench", help="benchmarks that print numbers")
    p.add_argument("what", choices=["model", "codec"])
    _add_profile(p, default="paper")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--seconds", type=float, default=30.0, help="codec: audio length")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    book = sub.add_parser("book", help="the book").add_subparsers(dest="action", required=True)
    p = book.add_parser("run", help="execute the notebooks in order with papermill, then build the HTML")
    p.add_argument("--profile", default="demo", choices=["smoke", "demo", "paper"])
    p.add_argument("--run-dir")
    p.add_argument("--no-html", action="store_true")
    p.set_defaults(func=cmd_book)
    return ap


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
