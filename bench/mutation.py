"""Break each loss term on purpose and check that the loss tests go red (docs/design.md, "Tests"; issue 11 item 5).

Each break is one or more exact text substitutions in one source file. For every break the script copies
`mtc_core/`, `tests/` and `pyproject.toml` of this checkout into a fresh temporary folder, applies the
substitutions there (never in the checkout: other people work in it), and runs the model, loss and estimator
tests against the copy (`python -m pytest -x -q`, one thread, PYTHONPATH and the working directory on the copy).
A break is caught when a test fails; the table names the first one. A substitution whose pattern is not found
exactly once stops the script with exit 2, so that a refactor cannot turn a break into a silent no-op; so does
an unbroken copy that fails its tests or imports `mtc_core` from anywhere but the copy. Exit 1 if a break survives.

    .venv/bin/python bench/mutation.py                      # every break (a few minutes on one core)
    .venv/bin/python bench/mutation.py --only factor_vae_tc_sign --only rtc_warmup_off
    .venv/bin/python bench/mutation.py --list
    .venv/bin/python bench/mutation.py --tests tests/test_models.py tests/test_estimators.py   # without the loss tests
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ("tests/test_losses.py", "tests/test_models.py", "tests/test_estimators.py")
COPIED = ("mtc_core", "tests", "pyproject.toml")


@dataclass(frozen=True)
class Break:
    name: str
    path: str  # source file, relative to the repository root
    substitutions: tuple[tuple[str, str], ...]  # (old, new), applied in order; each old must occur exactly once
    what: str


BREAKS = (
    Break("factor_vae_tc_sign", "mtc_core/models/factor_vae.py",
          (("tc = (logits[:, 0] - logits[:, 1]).mean()", "tc = (logits[:, 1] - logits[:, 0]).mean()"),),
          "FactorVAE's TC term with the wrong sign"),
    Break("factor_vae_gamma_ignored", "mtc_core/models/factor_vae.py",
          (("return kl + self.config.gamma * tc,", "return kl + tc,"),),
          "FactorVAE's gamma ignored"),
    Break("factor_vae_disc_labels_swapped", "mtc_core/models/factor_vae.py",
          (("F.cross_entropy(logits_real, real) + F.cross_entropy(logits_fake, 1 - real)",
            "F.cross_entropy(logits_real, 1 - real) + F.cross_entropy(logits_fake, real)"),),
          "FactorVAE's discriminator trained with joint / permuted labels swapped"),
    Break("permute_dims_identity", "mtc_core/models/discriminator.py",
          (("    return torch.stack([z[torch.randperm(batch, generator=generator, device=z.device), j] for j in range(z.shape[1])], dim=1)",
            "    return z"),),
          "permute_dims returns its input"),
    Break("permute_dims_rows_only", "mtc_core/models/discriminator.py",
          (("    return torch.stack([z[torch.randperm(batch, generator=generator, device=z.device), j] for j in range(z.shape[1])], dim=1)",
            "    return z[torch.randperm(batch, generator=generator, device=z.device)]"),),
          "permute_dims shuffles whole rows (one permutation for all columns: the joint is kept)"),
    Break("rtc_penalty_off", "mtc_core/models/rtc_vae.py",
          (("reg = kl + (c.beta - 1) * tc + ramp * c.lambda_t * tc_mean", "reg = kl + (c.beta - 1) * tc"),),
          "RTC-VAE's mean-TC penalty switched off"),
    Break("rtc_warmup_off", "mtc_core/models/rtc_vae.py",
          (("ramp = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps else 1.0", "ramp = 1.0"),),
          "RTC-VAE's warm-up ramp switched off (full weight from step 0)"),
    Break("rtc_sampled_tc_off", "mtc_core/models/rtc_vae.py",
          (("reg = kl + (c.beta - 1) * tc + ramp", "reg = kl + ramp"),),
          "RTC-VAE's sampled-code TC term (beta) dropped"),
    Break("beta_tcvae_alpha_ignored", "mtc_core/models/beta_tcvae.py",
          ((' + (c.alpha - 1) * parts["mi"]', ""),),
          "beta-TCVAE's alpha ignored"),
    Break("beta_tcvae_beta_ignored", "mtc_core/models/beta_tcvae.py",
          ((' + (c.beta - 1) * parts["tc"]', ""),),
          "beta-TCVAE's beta ignored"),
    Break("beta_tcvae_gamma_ignored", "mtc_core/models/beta_tcvae.py",
          ((' + (c.gamma - 1) * parts["dwkl"]', ""),),
          "beta-TCVAE's gamma ignored"),
    Break("dip_off_diagonal_dropped", "mtc_core/models/dip_vae.py",
          (("return lambda_od * (off_diag**2).sum() + lambda_d * ((diag - 1) ** 2).sum()", "return lambda_d * ((diag - 1) ** 2).sum()"),),
          "DIP-VAE's off-diagonal term dropped"),
    Break("dip_diagonal_dropped", "mtc_core/models/dip_vae.py",
          (("return lambda_od * (off_diag**2).sum() + lambda_d * ((diag - 1) ** 2).sum()", "return lambda_od * (off_diag**2).sum()"),),
          "DIP-VAE's diagonal term dropped"),
    Break("dip_ii_variance_dropped", "mtc_core/models/dip_vae.py",
          (("cov = cov + torch.diag(torch.exp(logvar).mean(0))", "cov = cov"),),
          "DIP-VAE-II without E[diag sigma^2] (it becomes DIP-VAE-I)"),
    Break("mss_mws_swapped", "mtc_core/estimators/minibatch.py",
          (('if estimator == "mws":\n        return torch.full', 'if estimator == "mss":\n        return torch.full'),
           ('if estimator == "mss":\n        if b < 3:', 'if estimator == "mws":\n        if b < 3:')),
          "MSS and MWS importance weights swapped"),
    Break("mss_one_over_n_in_column_0", "mtc_core/estimators/minibatch.py",
          (("w[rows, rows] = 1.0 / n", "w[rows, 0] = 1.0 / n"),),
          "MSS weight 1/N in column 0 instead of the diagonal (Chen et al.'s reference-code slip)"),
    Break("mws_without_dataset_size", "mtc_core/estimators/minibatch.py",
          (("-math.log(n * b)", "-math.log(b)"),),
          "MWS weights 1/B instead of 1/(N B)"),
    Break("kl_logvar_sign", "mtc_core/models/base.py",
          (("return 0.5 * (mu**2 + torch.exp(logvar) - logvar - 1)", "return 0.5 * (mu**2 + torch.exp(logvar) + logvar - 1)"),),
          "analytic KL with the log-variance sign flipped"),
    Break("beta_vae_beta_ignored", "mtc_core/models/beta_vae.py",
          (("return self.config.beta * kl,", "return kl,"),),
          "beta-VAE's beta ignored"),
    Break("vae_kl_dropped", "mtc_core/models/base.py",
          (("        return kl, {}\n", "        return torch.zeros_like(kl), {}\n"),),
          "the plain VAE's regulariser returns 0 instead of the KL it is given"),
    Break("base_kl_double_counted", "mtc_core/models/base.py",
          (("return reg, logs if lazy else read_logs(logs)", "return reg + kl, logs if lazy else read_logs(logs)"),),
          "the base adds the KL again to what the variant's regulariser returns"),
    Break("base_kl_detached", "mtc_core/models/base.py",
          (('self.regulariser(kl, out["mu"]', 'self.regulariser(kl.detach(), out["mu"]'),),
          "the base passes the KL without its gradient"),
    Break("beta_tcvae_kl_dropped", "mtc_core/models/beta_tcvae.py",
          (("reg = kl + (c.alpha - 1)", "reg = (c.alpha - 1)"),),
          "beta-TCVAE ignores the KL the base passes it"),
    Break("factor_vae_kl_double_counted", "mtc_core/models/factor_vae.py",
          (("return kl + self.config.gamma * tc,", "return 2 * kl + self.config.gamma * tc,"),),
          "FactorVAE counts the KL twice"),
    Break("dip_kl_dropped", "mtc_core/models/dip_vae.py",
          (("return kl + dip,", "return dip,"),),
          "DIP-VAE ignores the KL the base passes it"),
    Break("rtc_kl_dropped", "mtc_core/models/rtc_vae.py",
          (("reg = kl + (c.beta - 1) * tc + ramp", "reg = (c.beta - 1) * tc + ramp"),),
          "RTC-VAE ignores the KL the base passes it"),
    Break("kde_permutation_correction_removed", "mtc_core/estimators/minibatch.py",
          (("_kde_log_joint(x, h).mean() - _kde_log_joint(permuted, h).mean()",
            "_kde_log_joint(x, h).mean() - sum(_kde_log_joint(x[:, j : j + 1], h).mean() for j in range(dims))"),),
          "KDE mean-TC without the permuted-copy correction (plain joint minus marginals)"),
    Break("gaussian_mean_tc_ridge_offset_dropped", "mtc_core/estimators/minibatch.py",
          (("tc = 0.5 * (torch.log(torch.diagonal(ridged)).sum() - logdet)", "tc = -0.5 * logdet"),),
          "Gaussian mean-TC without its D/2 log(1 + ridge) term (no longer 0 on uncorrelated codes)"),
)


class PatternError(RuntimeError):
    pass


def make_copy(dest: Path, root: Path = ROOT) -> None:
    for name in COPIED:
        src = root / name
        if src.is_dir():
            # no bytecode: a same-size substitution within the same second could otherwise load a stale .pyc
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest / name)


def apply(brk: Break, tree: Path) -> None:
    path = tree / brk.path
    text = path.read_text()
    for old, new in brk.substitutions:
        count = text.count(old)
        if count != 1:
            raise PatternError(f"{brk.name}: expected exactly one {old!r} in {brk.path}, found {count}; update the break to the current source")
        text = text.replace(old, new)
    path.write_text(text)


def environment(tree: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("PYTEST_ADDOPTS", None)
    return env


def imported_from(tree: Path) -> Path:
    code = "import mtc_core, pathlib; print(pathlib.Path(mtc_core.__file__).resolve())"
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, env=environment(tree), capture_output=True, text=True, check=True)
    return Path(done.stdout.strip())


def run_tests(tree: Path, tests: tuple[str, ...]) -> tuple[int, str, float]:
    """(pytest exit code, first failing test or '', seconds)."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *tests]
    done = subprocess.run(cmd, cwd=tree, env=environment(tree), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    failed = re.search(r"^(?:FAILED|ERROR) (\S+)", done.stdout, flags=re.MULTILINE)
    first = failed.group(1) if failed else ""
    if done.returncode not in (0, 1) or (done.returncode == 1 and not first):
        first = f"pytest exit {done.returncode}: " + (done.stdout + done.stderr).strip().splitlines()[-1]
    return done.returncode, first, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this break (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the breaks and exit")
    parser.add_argument("--tests", nargs="+", default=list(TESTS), metavar="FILE", help=f"test files to run (default: {' '.join(TESTS)})")
    args = parser.parse_args(argv)
    by_name = {b.name: b for b in BREAKS}
    if args.list:
        for b in BREAKS:
            print(f"{b.name:40s} {b.path:36s} {b.what}")
        return 0
    unknown = sorted(set(args.only or ()) - set(by_name))
    if unknown:
        print(f"unknown break(s) {unknown}; see --list", file=sys.stderr)
        return 2
    chosen = [by_name[n] for n in args.only] if args.only else list(BREAKS)
    # a `kill` becomes an exception: subprocess.run then kills the running pytest and the temporary copies are removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tests = tuple(args.tests)

    with tempfile.TemporaryDirectory(prefix="mtc_mutation_") as tmp:
        # One snapshot of the checkout: every break is a copy of it, so all rows test the same source even while
        # others edit the checkout. Every pattern is checked against it before anything runs.
        probe = Path(tmp) / "probe"
        make_copy(probe)
        try:
            for brk in chosen:
                original = (probe / brk.path).read_text()
                apply(brk, probe)
                (probe / brk.path).write_text(original)
        except PatternError as err:
            print(err, file=sys.stderr)
            return 2
        if imported_from(probe) != (probe / "mtc_core" / "__init__.py").resolve():
            print(f"the copy imports mtc_core from {imported_from(probe)}, not from the copy", file=sys.stderr)
            return 2
        code, first, seconds = run_tests(probe, tests)
        print(f"unbroken copy: pytest exit {code} in {seconds:.1f} s ({', '.join(tests)})", flush=True)
        if code != 0:
            print(f"the unbroken code fails its tests ({first}); fix that first", file=sys.stderr)
            return 2

        rows = []
        for i, brk in enumerate(chosen):
            tree = Path(tmp) / f"break_{i}"
            make_copy(tree, root=probe)
            apply(brk, tree)
            code, first, seconds = run_tests(tree, tests)
            caught = code != 0
            rows.append((brk, caught, first, seconds))
            print(f"{brk.name}: {'caught' if caught else 'SURVIVED'} {first} ({seconds:.1f} s)", flush=True)
            shutil.rmtree(tree)

    print("\n| break | file | caught | first failing test | s |\n|---|---|---|---|---|")
    for brk, caught, first, seconds in rows:
        print(f"| {brk.what} (`{brk.name}`) | `{brk.path}` | {'yes' if caught else '**NO**'} | `{first or '-'}` | {seconds:.0f} |")
    survived = [brk.name for brk, caught, _, _ in rows if not caught]
    print(f"\n{len(rows) - len(survived)} of {len(rows)} breaks caught" + (f"; survived: {', '.join(survived)}" if survived else ""))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
