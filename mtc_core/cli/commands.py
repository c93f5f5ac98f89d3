"""Command line: python -m mtc_core {train, evaluate, evaluate-codes, report, traverse, theory, sweep, reproduce, zoo-add} ...

Bad flags, values and files exit 2 with a one-line reason (`main` turns every refusal the package raises,
ValueError or OSError, into that line); only a bug shows a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import yaml

from mtc_core.cli.parsing import (
    MAX_MESSAGE,
    MAX_POINTS,
    MAX_SEED,
    REPORT_FORMATS,
    TABLE_FORMATS,
    Parser,
    UsageError,
    add_dataclass_flags,
    check_output,
    image_formats,
    in_range,
)
from mtc_core.evaluation import stored


def cmd_train(argv: list[str]) -> int:
    import torch

    from mtc_core import runs
    from mtc_core.models import MODELS
    from mtc_core.training import cores, defaults
    from mtc_core.training.trainer import TqdmCallback, TrainConfig, check_out_folder, train

    probe = cores.LoadProbe()  # other programs' load, measured while the config is checked
    pre = Parser(add_help=False)
    pre.add_argument("--model", default=TrainConfig.model)
    known, _ = pre.parse_known_args(argv)
    if known.model not in MODELS:
        raise UsageError(f"unknown model {known.model!r}; choose from {', '.join(MODELS)}")
    parser = Parser(prog="python -m mtc_core train", description="Train one model into a run directory. Every setting not "
                    "given defaults as on the app's Train page (mtc_core.training.defaults): steps, batch_size and lr per "
                    "dataset (toy and squares 2,000 steps of batch 64 at lr 2e-3; the 64x64 datasets 15,000 at 1e-4), a "
                    "history record every 100 steps (more often below 2,000 steps). Torch threads: the cores other "
                    "programs leave free, unless --num-threads.")
    parser.add_argument("--out", required=True, help="run directory to write: a new or empty folder")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out (same settings as it was started with)")
    parser.add_argument("--overwrite", action="store_true", help="replace the run in --out (its run files are deleted)")
    parser.add_argument("--dataset", default=defaults.DATASET, help="toy | shapes2d | dsprites, or a JSON spec")
    add_dataclass_flags(parser, TrainConfig, skip=("model_params", "dataset"))
    model_group = parser.add_argument_group(f"{known.model} config")
    add_dataclass_flags(model_group, MODELS[known.model].Config)
    args = vars(parser.parse_args(argv))
    out, resume, overwrite, dataset = Path(args.pop("out")), args.pop("resume"), args.pop("overwrite"), args.pop("dataset")
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    train_args = {k: v for k, v in args.items() if k in train_names and k != "model"}
    model_params = {k: v for k, v in args.items() if k not in train_names}
    try:
        runs.refuse_if_busy(out)  # a run another process trains: before any other rule on the folder
        check_out_folder(out, resume=resume, overwrite=overwrite)
        spec = json.loads(dataset) if dataset.lstrip().startswith("{") else {"name": dataset}
        config = defaults.train_config(known.model, spec, model_params, **train_args)
    except json.JSONDecodeError as e:
        raise UsageError(f"--dataset is not valid JSON ({e})") from None
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        runs.check_writable_folder(out)
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    threads, line = cores.cli_threads(0.0 if config.num_threads else probe.others(), fixed=config.num_threads)
    print(line, flush=True)
    torch.set_num_threads(threads)  # the trainer sets a config's num_threads itself
    command = "python -m mtc_core train " + shlex.join(argv)
    # a run that cannot be resumed raises CheckpointError naming its problem; main() prints it as one line
    result = train(config, out, callbacks=[TqdmCallback(config.steps)], command=command, resume=resume, overwrite=overwrite)
    print(f"{result.status}: {result.step} steps -> {result.run_dir}" + (f" ({result.message})" if result.message else ""))
    return 0 if result.status == "complete" else 1


def cmd_evaluate(argv: list[str]) -> int:
    parser = Parser(prog="python -m mtc_core evaluate", description="Evaluate a run; writes its metrics.json.")
    parser.add_argument("run", type=Path)
    parser.add_argument("--num-train", type=int, default=stored.NUM_TRAIN, help=f"points for the array metrics (2..{MAX_POINTS:,})")
    parser.add_argument("--num-test", type=int, default=stored.NUM_TEST, help=f"held-out points (2..{MAX_POINTS:,})")
    parser.add_argument("--seed", type=int, default=stored.SEED)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    in_range("--num-train", args.num_train, 2, MAX_POINTS)
    in_range("--num-test", args.num_test, 2, MAX_POINTS)
    in_range("--seed", args.seed, 0, MAX_SEED)
    from mtc_core import runs
    from mtc_core.cli.progress import StageLog
    from mtc_core.training.trainer import resolve_device

    with StageLog() as log:  # one line per stage and the libraries' warnings as one note each, on stderr
        evaluation = stored.evaluate_and_store(args.run, num_train=args.num_train, num_test=args.num_test, seed=args.seed,
                                        device=resolve_device(args.device), progress=log)
    metrics_path = args.run / runs.METRICS
    from mtc_core.evaluation.codes_analysis import summary_table

    print(summary_table(evaluation))
    print(f"full results: {metrics_path} (\"evaluation\")")
    return 0


def cmd_evaluate_codes(argv: list[str]) -> int:
    from mtc_core.evaluation import codes_file

    parser = Parser(prog="python -m mtc_core evaluate-codes",
                    description="Analyse the codes of any VAE: everything evaluate reports that needs no encoder. The .npz holds "
                                "mean [N, D], logvar (or var, std) [N, D]; optional sampled [N, D], factors [N, K], "
                                "factor_names [K], num_train (README: exporting codes).")
    parser.add_argument("codes", type=Path, help=f".npz codes file (at most {codes_file.MAX_BYTES / 2**20:.0f} MB, "
                        "as the app's upload limit)")
    parser.add_argument("--out", type=Path, help="JSON file for the full result (default: next to the codes file, <name>.analysis.json)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the sampled codes (when the file has none), the split and every estimator")
    parser.add_argument("--dci-mode", choices=("fast", "gbt"), default="fast", help="gbt: disentanglement_lib's exact DCI, ~70 s")
    args = parser.parse_args(argv)
    in_range("--seed", args.seed, 0, MAX_SEED)
    out = args.out or args.codes.with_name(args.codes.stem + ".analysis.json")
    check_output(out, "--out", (".json",))
    from mtc_core import runs
    from mtc_core.cli.progress import StageLog
    from mtc_core.evaluation import codes_analysis

    codes = codes_file.load_codes(args.codes)
    with StageLog() as log:
        result = codes_analysis.analyse_validated_codes(codes, seed=args.seed, dci_mode=args.dci_mode, progress=log)
    runs.write_json(out, result)
    settings = result["settings"]
    print(f"{settings['num_points']:,} points x {codes.num_latents} latents; TCs on {settings['num_train']:,} points"
          + (f", factor metrics held out on {settings['num_test']:,} ({settings['split']} split)" if settings["num_test"] else "")
          + f"; sampled codes {'from the file' if settings['sampled'] == 'file' else 'drawn with the seed'}")
    if codes.dropped_factors:
        print(f"constant factors left out: {', '.join(codes.dropped_factors)}")
    print(codes_analysis.summary_table(result))
    print(f"full results: {out}")
    return 0


def cmd_report(argv: list[str]) -> int:
    parser = Parser(prog="python -m mtc_core report",
                    description="A run's analysis (config, TC report with intervals, activity, metrics, training curves, a "
                                "traversal) as one self-contained HTML file that opens offline; the Models page's download.")
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, help="HTML file to write (default: <run name>.report.html in the current folder)")
    parser.add_argument("--no-traversal", action="store_true", help="leave out the traversal image (it loads the model, ~3 s)")
    args = parser.parse_args(argv)
    out = args.out or Path(args.run.resolve().name + ".report.html")
    check_output(out, "--out", REPORT_FORMATS)
    from mtc_core import runs
    from mtc_core.evaluation import run_report

    text = run_report.run_report_html(args.run, traversal=not args.no_traversal)  # ValueError for a folder holding no run
    runs.atomic_write_bytes(out, text.encode("utf-8"))
    print(f"wrote {out} ({len(text.encode('utf-8')) / 1e3:,.0f} kB)")
    return 0


def cmd_traverse(argv: list[str]) -> int:
    from mtc_core.visualize.traversal import MAX_EXTENT, MAX_SCALE, MAX_STEPS, RANGE_MODES

    parser = Parser(prog="python -m mtc_core traverse", description="Latent traversal of a run as a PNG grid and an animated GIF.")
    parser.add_argument("run", type=Path)
    parser.add_argument("--png", type=Path, default=Path("traversal.png"))
    parser.add_argument("--gif", type=Path, default=Path("traversal.gif"))
    parser.add_argument("--steps", type=int, default=10, help=f"values per latent (2..{MAX_STEPS})")
    parser.add_argument("--range", dest="mode", choices=RANGE_MODES, default="prior")
    parser.add_argument("--extent", type=float, default=2.0, help=f"prior sd for --range prior (up to {MAX_EXTENT:g})")
    parser.add_argument("--seed", type=int, default=0, help="picks the base image")
    parser.add_argument("--scale", type=int, default=2, help=f"pixels per image pixel (1..{MAX_SCALE})")
    args = parser.parse_args(argv)
    in_range("--steps", args.steps, 2, MAX_STEPS)
    in_range("--scale", args.scale, 1, MAX_SCALE)
    if not 0 < args.extent <= MAX_EXTENT:
        raise UsageError(f"--extent must be in (0, {MAX_EXTENT:g}], got {args.extent}")
    in_range("--seed", args.seed, 0, MAX_SEED)
    check_output(args.png, "--png", image_formats())
    check_output(args.gif, "--gif", (".gif",))
    from mtc_core.visualize import figures
    from mtc_core.visualize.traversal import check_grid_size, encode_numpy, latent_activity, traversal_values, traverse

    model, _, dataset = stored.run_and_dataset(args.run)
    check_grid_size(model.config.latent_dim, args.steps, dataset.image_shape, args.scale)
    rng = np.random.default_rng(args.seed)
    images = dataset.render(dataset.sample_factors(1000, rng))
    mu, logvar = encode_numpy(model, images)
    order = np.argsort(-latent_activity(mu, logvar))
    grid = traverse(model, mu[0], order, traversal_values(mu, args.steps, args.mode, args.extent))
    figures.image_grid(grid, scale=args.scale).save(args.png)
    args.gif.write_bytes(figures.traversal_gif(grid, scale=args.scale))
    print(f"wrote {args.png} and {args.gif} (latents in activity order: {order.tolist()})")
    return 0


def cmd_theory(argv: list[str]) -> int:
    parser = Parser(prog="python -m mtc_core theory", description="The mean-vs-sampled TC theorem (docs/design.md: The theorem) as a table.")
    parser.add_argument("--d", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--s", type=float, default=1.0, help="posterior variance added to every dim")
    parser.add_argument("--rho", type=float, nargs="+", default=[0.0, 0.5, 0.9, 0.99, 0.999, 0.9999])
    args = parser.parse_args(argv)
    from mtc_core import theory

    print(f"posterior variance s = {args.s}\n")
    print("| d | rho | TC(mean) nats | TC(sampled) nats | bound B(d, s) |")
    print("|---|---|---|---|---|")
    try:
        for d in args.d:
            bound = theory.sampled_tc_bound(d, args.s)
            for rho in args.rho:
                print(f"| {d} | {rho:g} | {theory.mean_tc(d, rho):.4f} | {theory.sampled_tc(d, rho, args.s):.4f} | {bound:.4f} |")
    except ValueError as e:
        raise UsageError(str(e)) from None
    return 0


def cmd_sweep(argv: list[str]) -> int:
    parser = Parser(prog="python -m mtc_core sweep", description="Train every run of a sweep spec (YAML/JSON) through Ray.")
    parser.add_argument("spec", type=Path)
    parser.add_argument("--out", type=Path, help="sweep folder (default: runs/sweeps/<spec name>); rerun to resume")
    parser.add_argument("--address", help="join a running Ray cluster: auto, HOST:PORT or ray://HOST:10001 (default: start a local one)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    parser.add_argument("--cpus-per-run", type=int, default=1, help="CPUs (= torch threads) per run")
    parser.add_argument("--gpus-per-run", type=float, default=0, help="GPUs per run, fractions allowed; runs then use device cuda")
    parser.add_argument("--only", nargs="+", metavar="PATTERN",
                        help="train only the runs whose name matches a shell-style pattern, e.g. 'rtc_vae-*' 'vae-seed=0'")
    parser.add_argument("--max-runs", type=int, default=None, help="refuse a spec of more runs than this (default: 1,000)")
    args = parser.parse_args(argv)
    from mtc_core.training import sweep

    if args.address and args.num_cpus:
        raise UsageError("--num-cpus sizes a local Ray instance; a cluster joined with --address has its own")
    out = args.out or Path("runs/sweeps") / args.spec.stem
    try:
        spec = sweep.load_spec(args.spec)
        outcomes = sweep.run_sweep(spec, out, address=args.address, num_cpus=args.num_cpus, cpus_per_run=args.cpus_per_run,
                                   gpus_per_run=args.gpus_per_run, only=args.only, command="python -m mtc_core sweep " + shlex.join(argv),
                                   max_runs=sweep.MAX_RUNS if args.max_runs is None else args.max_runs)
    except KeyboardInterrupt:
        print(f"interrupted: rerun the same command to resume (finished runs are skipped, the others resume from their checkpoints in {out})")
        return 130
    return 0 if all(o.ok for o in outcomes) else 1


def cmd_reproduce(argv: list[str]) -> int:
    parser = Parser(prog="python -m mtc_core reproduce",
                    description="Evaluate the zoo (or aggregate a sweep folder) into a results table and figures.")
    parser.add_argument("--sweep", type=Path, metavar="FOLDER",
                        help="a sweep folder: mean ± sd over seeds per model and setting, and the TC-vs-regularisation plot")
    parser.add_argument("--table", type=Path, help="markdown file to write (default: FOLDER/results.md, or RESULTS.md for the zoo)")
    parser.add_argument("--plot", type=Path, help="sweep: PNG to write (default: FOLDER/tc_vs_regularisation.png)")
    parser.add_argument("--zoo", type=Path, default=Path("pretrained"), help="zoo folder with index.json (without --sweep)")
    parser.add_argument("--figures", type=Path, default=Path("docs/results"), help="zoo: folder for the PNG figures")
    parser.add_argument("--num-train", type=int, default=10_000)
    parser.add_argument("--num-test", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    in_range("--num-train", args.num_train, 2, MAX_POINTS)
    in_range("--num-test", args.num_test, 2, MAX_POINTS)
    in_range("--seed", args.seed, 0, MAX_SEED)
    if args.table is not None:
        check_output(args.table, "--table", TABLE_FORMATS)
    if args.plot is not None:
        check_output(args.plot, "--plot", (".png",))
    if args.sweep is None:
        return _reproduce_zoo(args, argv)
    from mtc_core.evaluation import sweep_results

    if not args.sweep.is_dir():
        raise UsageError(f"{args.sweep}: not a folder")
    try:
        table = sweep_results.aggregate(sweep_results.load_sweep(args.sweep))
        text = sweep_results.markdown_table(table)
        plot = sweep_results.plot_regularisation(table, args.plot or args.sweep / "tc_vs_regularisation.png")
    except ValueError as e:
        raise UsageError(str(e)) from None
    table_path = args.table or args.sweep / "results.md"
    table_path.write_text(text)
    print(text)
    print(f"wrote {table_path} and {plot}")
    return 0


def _reproduce_zoo(args: argparse.Namespace, argv: list[str]) -> int:
    from mtc_core.evaluation import claims, results_figures

    settings = {"num_train": args.num_train, "num_test": args.num_test, "seed": args.seed}
    if not args.zoo.is_dir():
        raise UsageError(f"--zoo {args.zoo}: not a folder")
    skipped: list[str] = []
    rows = claims.evaluate_zoo(args.zoo, settings, skipped=skipped)
    if not rows:
        raise UsageError(f"{args.zoo}: no model could be evaluated ({len(skipped)} skipped)" if skipped else
                         f"{args.zoo}: no models listed in its index.json")
    table = claims.aggregate(rows)
    paths = results_figures.figures(table, args.figures)
    text = claims.markdown(table, settings, ("python -m mtc_core reproduce " + shlex.join(argv)).strip(), rows)
    table_path = args.table or Path("RESULTS.md")
    table_path.write_text(text)
    print("\n".join(claims.claims(table)))
    print(f"wrote {table_path}, {', '.join(map(str, paths))}")
    if skipped:
        print(f"warning: {len(skipped)} zoo model(s) skipped, the table leaves them out: " + "; ".join(skipped), file=sys.stderr)
    return 0


def cmd_zoo_add(argv: list[str]) -> int:
    parser = Parser(prog="python -m mtc_core zoo-add", description="Copy a complete run into the shipped zoo (float16 weights).")
    parser.add_argument("run", type=Path)
    parser.add_argument("--name", required=True, help="folder name inside the zoo")
    parser.add_argument("--label", required=True, help="what the app's model picker shows")
    parser.add_argument("--zoo", type=Path, default=Path("pretrained"))
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the zoo's model of that name (only a model listed in the zoo's index.json)")
    args = parser.parse_args(argv)
    from mtc_core.runs import zoo

    try:  # for the message: "replaced" or "added"
        existed = (args.zoo / args.name).is_dir()
    except (OSError, ValueError):
        existed = False
    try:
        target = zoo.add_run(args.run, args.zoo, args.name, args.label, overwrite=args.overwrite)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(f"{'replaced' if existed else 'added'} {target} ({(target / 'model.safetensors').stat().st_size / 1e6:.2f} MB of weights)")
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "evaluate-codes": cmd_evaluate_codes, "report": cmd_report,
            "traverse": cmd_traverse, "theory": cmd_theory, "sweep": cmd_sweep, "reproduce": cmd_reproduce, "zoo-add": cmd_zoo_add}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m mtc_core {{{','.join(COMMANDS)}}} ... (each takes --help)")
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"mtc_core: error: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except (UsageError, ValueError, OSError, yaml.YAMLError) as e:  # ValueError includes runs.CheckpointError
        print(f"mtc_core {argv[0]}: error: {_one_line(e)}", file=sys.stderr)
        return 2


def _one_line(error: BaseException) -> str:
    """The reason of a refusal on one line of at most MAX_MESSAGE characters; an OSError names its file."""
    if isinstance(error, OSError) and error.strerror:
        files = [f for f in (error.filename, error.filename2) if f is not None]
        text = f"{' -> '.join(map(str, files))}: {error.strerror}" if files else error.strerror
    else:
        text = str(error) or type(error).__name__
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + " ..."


if __name__ == "__main__":
    sys.exit(main())
