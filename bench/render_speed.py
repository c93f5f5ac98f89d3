"""Procedural rendering speed: Shapes2D and Shapes3D (and optionally the dSprites variants), and Shapes2D against
reading the same images back from an uncompressed .npz on disk.

Usage: OMP_NUM_THREADS=1 python bench/render_speed.py [--chunk 1024] [--batches 2000] [--repeats 3] [--no-disk]
       [--variants] [--tmpdir DIR]
Single-threaded: every renderer is numpy indexing plus (Shapes3D) one small float32 matrix product per image, so
run it with OMP_NUM_THREADS=1 to keep BLAS on one thread. Each repeat times every dataset back to back, and both
wall-clock and CPU time (process_time) are reported: on a shared machine the CPU time is what one thread costs and
the ratio to Shapes2D in the same run is the number to compare across machines. The disk comparison needs about
3 GB of RAM and 3 GB of disk (the Shapes2D grid as uint8). Prints markdown tables.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mtc_core.data import ColorDSprites, NoisyDSprites, Shapes2D, Shapes3D


def timed(fn) -> tuple[float, float]:
    """(wall s, CPU s) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of fn() over repeats runs (the machine is shared; the median damps the noise)."""
    return float(np.median([timed(fn)[0] for _ in range(repeats)]))


def speed_table(datasets: dict, args) -> None:
    """Random batches of 64 and the whole grid in chunks, each dataset timed in turn within every repeat."""
    batches = {name: [ds.sample_factors(64, np.random.default_rng(seed)) for seed in range(args.batches)] for name, ds in datasets.items()}
    def render_all(ds, factor_batches):  # each image batch is dropped at once: the grid is never held in memory
        for factors in factor_batches:
            ds.render(factors)

    def grid_chunks(ds):
        n = len(ds)
        return (ds.index_to_factors(np.arange(first, min(first + args.chunk, n))) for first in range(0, n, args.chunk))

    times = {name: {"batch": [], "grid": []} for name in datasets}
    for _ in range(args.repeats):
        for name, ds in datasets.items():
            times[name]["batch"].append(timed(lambda ds=ds, name=name: render_all(ds, batches[name])))
            if name in ("Shapes2D", "Shapes3D"):
                times[name]["grid"].append(timed(lambda ds=ds: render_all(ds, grid_chunks(ds))))
    images = 64 * args.batches
    base = {clock: images / np.median([t[clock] for t in times["Shapes2D"]["batch"]]) for clock in (0, 1)}
    print(f"Random batches of 64 ({args.batches} batches) and the whole grid in chunks of {args.chunk}; median of {args.repeats} "
          "repeats, each timing every dataset in turn.\n")
    print("| dataset | batches of 64, images/s (wall) | (CPU) | ratio to Shapes2D (wall / CPU) | whole grid, s (wall / CPU) |")
    print("|---|---|---|---|---|")
    for name in datasets:
        rate = [images / np.median([t[clock] for t in times[name]["batch"]]) for clock in (0, 1)]
        grid = times[name]["grid"]
        grid_text = (f"{len(datasets[name]):,} images: {np.median([t[0] for t in grid]):.1f} / {np.median([t[1] for t in grid]):.1f}"
                     if grid else "-")
        print(f"| {name} | {rate[0]:,.0f} | {rate[1]:,.0f} | {rate[0] / base[0]:.2f} / {rate[1] / base[1]:.2f} | {grid_text} |")
    print()


def disk_table(args) -> None:
    """Shapes2D rendered vs the same images indexed from the whole grid saved as an uncompressed .npz."""
    start = time.perf_counter()
    shapes = Shapes2D()
    setup_s = time.perf_counter() - start
    n = len(shapes)
    batches = [shapes.sample_factors(64, np.random.default_rng(seed)) for seed in range(args.batches)]
    chunks = [shapes.index_to_factors(np.arange(first, min(first + args.chunk, n))) for first in range(0, n, args.chunk)]

    def render_batches():
        for factors in batches:
            shapes.render(factors)

    def render_grid():
        for factors in chunks:
            shapes.render(factors)

    batch_render_s = median_seconds(render_batches, args.repeats)
    grid_render_s = median_seconds(render_grid, args.repeats)

    with tempfile.TemporaryDirectory(dir=args.tmpdir) as tmp:
        path = Path(tmp) / "shapes2d_grid.npz"
        grid = np.empty((n, 64, 64), np.uint8)
        for first, factors in zip(range(0, n, args.chunk), chunks, strict=True):
            grid[first : first + len(factors)] = shapes.render(factors)[:, 0]
        np.savez(path, imgs=grid)
        del grid
        size_gb = path.stat().st_size / 1e9
        loaded = {}

        def load():
            loaded.clear()  # free the previous copy before reading the next
            with np.load(path, allow_pickle=False) as archive:
                loaded["imgs"] = archive["imgs"]

        load_s = median_seconds(load, args.repeats)
    stored = loaded.pop("imgs")

    # the same images read back, converted to what render returns: float32 [N, 1, 64, 64]
    def read_batches():
        for factors in batches:
            stored[shapes.factors_to_index(factors)].astype(np.float32)[:, None]

    def read_grid():
        for factors in chunks:
            stored[shapes.factors_to_index(factors)].astype(np.float32)[:, None]

    batch_read_s = median_seconds(read_batches, args.repeats)
    grid_index_s = median_seconds(read_grid, args.repeats)
    check = np.concatenate(batches[:20])
    assert np.array_equal(stored[shapes.factors_to_index(check)], shapes.render(check)[:, 0]), "renders differ from the file"

    batch_images = 64 * args.batches
    render_rate, read_rate = batch_images / batch_render_s, batch_images / batch_read_s
    read_grid_s = load_s + grid_index_s
    print(f"Shapes2D, {n:,} images; sprite table built in {setup_s:.2f} s; npz {size_gb:.2f} GB (page cache warm); median of {args.repeats} runs\n")
    print("| task | procedural render | npz on disk (np.load + index) | render / disk speed |")
    print("|---|---|---|---|")
    print(
        f"| {args.batches} random batches of 64, images/s | {render_rate:,.0f} | {read_rate:,.0f} (after a "
        f"{load_s:.1f} s load) | {render_rate / read_rate:.2f}x |"
    )
    print(
        f"| whole grid in chunks of {args.chunk}, s | {grid_render_s:.1f} ({n / grid_render_s:,.0f} images/s) | "
        f"{read_grid_s:.1f} (load {load_s:.1f} + index {grid_index_s:.1f}) | {read_grid_s / grid_render_s:.2f}x |"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=int, default=1024, help="images per render call for the whole grid")
    parser.add_argument("--batches", type=int, default=2000, help="random batches of 64 to time")
    parser.add_argument("--repeats", type=int, default=3, help="timings are the median of this many runs")
    parser.add_argument("--no-disk", action="store_true", help="skip the Shapes2D vs .npz-on-disk comparison")
    parser.add_argument("--variants", action="store_true", help="also time colour- and noisy-dSprites (batches only)")
    parser.add_argument("--tmpdir", default=None, help="where to write the temporary .npz")
    args = parser.parse_args()

    wall, cpu = timed(Shapes3D)  # builds the scene tables (cached for the process)
    print(f"Shapes3D tables built in {wall:.2f} s wall, {cpu:.2f} s CPU\n")
    datasets = {"Shapes2D": Shapes2D(), "Shapes3D": Shapes3D()}
    if args.variants:
        datasets.update({"colour-dSprites": ColorDSprites(), "noisy-dSprites": NoisyDSprites()})
    speed_table(datasets, args)
    if not args.no_disk:
        disk_table(args)


if __name__ == "__main__":
    main()
