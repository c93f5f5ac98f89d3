"""Shapes2D: procedural rendering vs reading the same images back from an uncompressed .npz on disk.

Usage: python bench/render_speed.py [--chunk 1024] [--batches 2000] [--repeats 3] [--tmpdir DIR]
Needs about 3 GB of RAM and 3 GB of disk (the whole grid as uint8). Single-threaded: both sides are plain numpy
indexing, no BLAS or torch. Prints a markdown table.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from mtc_core.data import Shapes2D


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of fn() over repeats runs (the machine is shared; the median damps the noise)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=int, default=1024, help="images per render call for the whole grid")
    parser.add_argument("--batches", type=int, default=2000, help="random batches of 64 to time")
    parser.add_argument("--repeats", type=int, default=3, help="timings are the median of this many runs")
    parser.add_argument("--tmpdir", default=None, help="where to write the temporary .npz")
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()
