"""GPU speed, side by side in one run: ``python -m rqgmm.bench.gpu [--out results.json]``.

On one GPU and one data set (unit vectors drawn around 4,096 centres, already on
the GPU), at each matrix-product precision:

- the plain-torch anchor: one whole-matrix EM iteration with no chunks and no
  float64 statistics, against one ``DiagonalGMM`` iteration from the same start;
- ``RQGMM`` and ``RQKMeans`` fits (L x K, a fixed number of iterations) and
  their encoding rate, with the share of full IDs equal to the fp32 fit's;
- ``semantic-id``'s RQ-KMeans (torch backend) on the same data, when installed;
- ``rqgmm fit`` on the same rows from a ``.npy`` file, against the library call.

Every timing is a median over repeats, with the device synchronised around it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from rqgmm.runtime.device import PRECISIONS, matmul_precision
from rqgmm.tokenizers.gmm import DiagonalGMM, GMMParams
from rqgmm.tokenizers.kmeans import kmeans_plusplus
from rqgmm.tokenizers.level import POINTS_PER_CENTRE
from rqgmm.runtime.seeding import cpu_generator
from rqgmm.tokenizers.residual import RQGMM, RQKMeans
from rqgmm.runtime.source import RowSource
from rqgmm.bench import speed

logger = logging.getLogger(__name__)


def unit_vectors(n: int, d: int, n_centres: int, seed: int, device: str) -> torch.Tensor:
    """(n, d) float32 unit vectors drawn around ``n_centres`` random unit centres, on ``device``."""
    g = torch.Generator(device=device).manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(n_centres, d, generator=g, device=device), dim=1)
    X = torch.empty(n, d, device=device)
    for lo in range(0, n, 1 << 20):
        hi = min(lo + (1 << 20), n)
        pick = torch.randint(0, n_centres, (hi - lo,), generator=g, device=device)
        X[lo:hi] = centres[pick] + 0.35 * torch.randn(hi - lo, d, generator=g, device=device) / math.sqrt(d) * 4
    return torch.nn.functional.normalize(X, dim=1)


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after one warm-up, the GPU synchronised around each."""
    fn()
    return speed.median_seconds(fn, repeats, torch.cuda.synchronize)


def anchor_iteration(X: torch.Tensor, p: GMMParams) -> GMMParams:
    """One EM iteration in plain torch: whole (N, K) matrices, float32 statistics, no chunks."""
    prec = 1.0 / p.variances
    const = X.shape[1] * math.log(2 * math.pi) + torch.log(p.variances).sum(1) + (p.means ** 2 * prec).sum(1)
    X2 = X * X
    wlp = -0.5 * (X2 @ prec.T - 2.0 * (X @ (p.means * prec).T) + const) + torch.log(p.weights)
    resp = torch.softmax(wlp, dim=1)
    nk = resp.sum(0) + 1e-6
    means = (resp.T @ X) / nk[:, None]
    variances = (resp.T @ X2) / nk[:, None] - means ** 2 + 1e-6
    return GMMParams(nk / nk.sum(), means, variances.clamp_min(1e-6))


def em_iteration(X: torch.Tensor, k: int, precision: str, repeats: int) -> dict:
    """Seconds per EM iteration: the anchor and DiagonalGMM's step, from the same start."""
    level = DiagonalGMM(k, max_iter=1, random_state=0, device=str(X.device), progress=False).fit(X)
    start = level.params
    source = RowSource(X, dtype=X.dtype, device=X.device, chunk_size=None)
    generator = torch.Generator().manual_seed(0)
    with matmul_precision(precision, X.device):
        anchor = median_seconds(lambda: anchor_iteration(X, start), repeats)
        ours = median_seconds(lambda: level._step(source, GMMParams(start.weights.clone(), start.means.clone(),
                                                                    start.variances.clone()), generator), repeats)
    return {"anchor_ms": 1e3 * anchor, "diagonal_gmm_ms": 1e3 * ours, "ratio": ours / anchor}


def sklearn_array_api_iteration(X: torch.Tensor, k: int, repeats: int) -> dict:
    """scikit-learn's GaussianMixture (diag) on the GPU tensor through the array API, ms per EM iteration.

    Needs ``SCIPY_ARRAY_API=1`` in the environment before scipy is imported; the
    time per iteration is T(1 + n) − T(1) over n, so its initialisation cancels.
    Returns the reason instead of a time when it does not run.
    """
    import sklearn
    from sklearn.mixture import GaussianMixture

    def fit(n: int) -> None:
        with sklearn.config_context(array_api_dispatch=True):
            GaussianMixture(k, covariance_type="diag", max_iter=n, tol=0.0, random_state=0,
                            init_params="random_from_data").fit(X)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            long, short = median_seconds(lambda: fit(6), repeats), median_seconds(lambda: fit(1), repeats)
    except Exception as exc:  # a peer that does not run is reported, not fatal
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    return {"ms_per_iteration": 1e3 * (long - short) / 5, "version": sklearn.__version__}


def fit_and_encode(cls, X: torch.Tensor, levels: int, k: int, iters: int, precision: str):
    """Fit seconds, encode rate (items/s), peak GPU memory and RMSE of one stack; also its codes and the model."""
    model = cls(levels=levels, codebook_size=k, random_state=0, max_iter=iters, tol=0.0, device=str(X.device),
                precision=precision, progress=False)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    model.fit(X)
    torch.cuda.synchronize()
    fit_s = time.perf_counter() - start
    encode_s = median_seconds(lambda: model.encode(X), 3)
    peak_gb = torch.cuda.max_memory_allocated() / 1e9
    codes = model.encode(X)
    squared = sum(float(((model.decode(c) - x) ** 2).sum()) for c, x in zip(codes.split(1 << 20), X.split(1 << 20)))
    stats = {"fit_s": fit_s, "encode_items_per_s": X.shape[0] / encode_s, "peak_gpu_gb": peak_gb,
             "rmse": math.sqrt(squared / X.shape[0])}
    return stats, codes.cpu().numpy(), model


def full_id_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows whose whole code tuple is equal in ``a`` and ``b`` (N, L)."""
    return float((a == b).all(1).mean())


def semantic_id_fit(X: torch.Tensor, levels: int, k: int, iters: int) -> dict | None:
    """semantic-id's RQ-KMeans (torch backend, one initialisation) on the same rows, if it is installed."""
    try:
        import semantic_id
    except ImportError:
        return None
    X_np = X.cpu().numpy()
    model = semantic_id.RQKMeans(n_levels=levels, n_clusters=k, max_iter=iters, random_state=0, n_init=1)
    start = time.perf_counter()
    model.fit(X_np, device=str(X.device))
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    codes = np.asarray(model.encode(X_np, device=str(X.device)))
    encode_s = time.perf_counter() - start
    recon = sum(model.codebooks_[l][codes[:, l]] for l in range(levels)) if hasattr(model, "codebooks_") else None
    rmse = None if recon is None else float(np.sqrt(((np.asarray(recon) - X_np) ** 2).sum(1).mean()))
    return {"version": semantic_id.__version__, "fit_s": fit_s, "encode_items_per_s": len(X_np) / encode_s,
            "rmse": rmse}


def cli_fit(X: torch.Tensor, levels: int, k: int, iters: int) -> dict:
    """``rqgmm fit x.npy --device cuda`` as a user runs it (process start included) vs the library call."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npy"
        np.save(path, X.cpu().numpy())
        command = [sys.executable, "-m", "rqgmm", "fit", str(path), "--device", str(X.device), "--levels", str(levels),
                   "--codebook-size", str(k), "--max-iter", str(iters), "--quiet", "--out", str(Path(tmp) / "m")]
        start = time.perf_counter()
        subprocess.run(command, check=True)
        cli_s = time.perf_counter() - start
        codes_path = Path(tmp) / "codes.npy"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rqgmm", "encode", str(Path(tmp) / "m"), str(path), "--device",
                        str(X.device), "--quiet", "--out", str(codes_path)], check=True)
        encode_s = time.perf_counter() - start
        from rqgmm import load

        same = bool(np.array_equal(np.load(codes_path), load(Path(tmp) / "m", device=X.device).encode(X).cpu().numpy()))
        # What any fresh process pays before its first row: interpreter, imports, CUDA context.
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import rqgmm.cli, torch; torch.zeros(1, device='cuda') @ "
                        "torch.zeros(1, 1, device='cuda'); torch.cuda.synchronize()"], check=True)
        startup_s = time.perf_counter() - start
    return {"cli_fit_s": cli_s, "cli_encode_s": encode_s, "cli_codes_equal_library": same,
            "fresh_process_startup_s": startup_s}


def run(n: int, d: int, levels: int, k: int, iters: int, repeats: int, precisions: list[str]) -> dict:
    """Every measurement of the module docstring; returns the results as one record."""
    X = unit_vectors(n, d, 4096, 0, "cuda")
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "n": n, "d": d, "levels": levels,
              "k": k, "iters": iters, "precisions": {}}
    reference = {}
    for precision in precisions:
        row = {"em_iteration": em_iteration(X, k, precision, repeats)}
        for cls in (RQGMM, RQKMeans):
            stats, codes, model = fit_and_encode(cls, X, levels, k, iters, precision)
            first = reference.setdefault(cls.method, (codes, model))
            stats["full_id_agreement_with_fp32"] = full_id_agreement(codes, first[0])
            # the fp32 model encoding at this precision: the products' rounding alone, no refit
            encoded = first[1].set_params(precision=precision).encode(X).cpu().numpy()
            first[1].set_params(precision=precisions[0])
            stats["fp32_model_encode_agreement"] = full_id_agreement(encoded, first[0])
            row[cls.method] = stats
        result["precisions"][precision] = row
        logger.info("%s: %s", precision, json.dumps(row))
    result["semantic_id"] = semantic_id_fit(X, levels, k, iters)
    result["cli"] = cli_fit(X, levels, k, iters)
    result["cli"]["library_fit_s"] = result["precisions"][precisions[0]]["rqgmm"]["fit_s"]
    return result


def cpu_cuda_agreement(n: int, d: int, levels: int, k: int) -> dict:
    """The same seed fitted on the CPU and on the GPU: share of equal full IDs (and of a CPU model encoded on both)."""
    X = unit_vectors(n, d, 4096, 1, "cuda").cpu().numpy()
    sample = torch.from_numpy(X[: POINTS_PER_CENTRE * k])
    starts = [kmeans_plusplus(sample.to(device), k, cpu_generator(0)).cpu() for device in ("cpu", "cuda")]
    out = {"n": n, "d": d, "levels": levels, "k": k,
           "kmeans++_start_max_abs_difference": float((starts[0] - starts[1]).abs().max())}
    for cls in (RQGMM, RQKMeans):
        cpu = cls(levels=levels, codebook_size=k, random_state=0, progress=False).fit(X)
        gpu = cls(levels=levels, codebook_size=k, random_state=0, device="cuda", progress=False).fit(X)
        cpu_codes = cpu.encode(X)
        out[cls.method] = {"fits_agree": full_id_agreement(cpu_codes, gpu.encode(X)),
                           "cpu_model_encoded_on_gpu_agrees": full_id_agreement(cpu_codes, cpu.to("cuda").encode(X))}
    return out


def scale(n: int, d: int, levels: int, k: int, iters: int) -> dict:
    """A large fit on the GPU: seconds, peak GPU memory and encode rate."""
    X = unit_vectors(n, d, 4096, 2, "cuda")
    stats, _, _ = fit_and_encode(RQGMM, X, levels, k, iters, "fp32")
    return {"n": n, "d": d, "levels": levels, "k": k, "iters": iters, **stats, "data_gb": X.numel() * 4 / 1e9}


def real_agreement(path: str, levels: int, k: int) -> dict:
    """Real embeddings (a .npy): share of full IDs at each precision equal to fp32's, per stack."""
    X = torch.from_numpy(np.load(path)).float().cuda()
    out = {"path": Path(path).name, "n": X.shape[0], "d": X.shape[1], "levels": levels, "k": k}
    for cls in (RQGMM, RQKMeans):
        codes = {p: fit_and_encode(cls, X, levels, k, 30, p)[1] for p in PRECISIONS}
        # (fits at each precision from the same seed; the draws of the start are device- and precision-independent)
        out[cls.method] = {p: full_id_agreement(c, codes["fp32"]) for p, c in codes.items()}
    return out


def table(result: dict) -> str:
    """The results as a markdown table, one row per precision (agree: full IDs of the fit / of the fp32 model's
    encoding at this precision, equal to the fp32 fit's)."""
    lines = ["| precision | anchor EM ms | DiagonalGMM ms | ratio | RQGMM fit s | RQGMM encode M/s | agree fit / enc | "
             "RQKMeans fit s | RQKMeans encode M/s | agree fit / enc |", "|" + "---|" * 10]
    for precision, row in result["precisions"].items():
        em, g, km = row["em_iteration"], row["rqgmm"], row["rqkmeans"]
        lines.append(f"| {precision} | {em['anchor_ms']:.1f} | {em['diagonal_gmm_ms']:.1f} | {em['ratio']:.2f} | "
                     f"{g['fit_s']:.2f} | {g['encode_items_per_s'] / 1e6:.1f} | {_agree(g)} | "
                     f"{km['fit_s']:.2f} | {km['encode_items_per_s'] / 1e6:.1f} | {_agree(km)} |")
    return "\n".join(lines)


def _agree(stats: dict) -> str:
    return f"{stats['full_id_agreement_with_fp32']:.4f} / {stats['fp32_model_encode_agreement']:.4f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m rqgmm.bench.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--sections", default="main,cpu,scale",
                        help="main (the table, the command line included), cli (the command line alone), "
                             "cpu (CPU vs GPU IDs, 200,000 x 384, 2 x 128), sklearn (scikit-learn's array-API "
                             "GaussianMixture per EM iteration; run with SCIPY_ARRAY_API=1), "
                             "scale (10,000,000 x 256, 2 x 256, 10 iterations), real (needs --real)")
    parser.add_argument("--real", default=None, help="a .npy of real embeddings for the precision agreement")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not torch.cuda.is_available():
        parser.error("no CUDA device: this benchmark measures GPU speed")
    sections, result = args.sections.split(","), {}
    if "real" in sections and args.real:
        result["real"] = real_agreement(args.real, 2, 32)
    if "cpu" in sections:
        result["cpu_vs_gpu"] = cpu_cuda_agreement(200_000, 384, 2, 128)
    if "sklearn" in sections:
        X = unit_vectors(args.rows, args.dim, 4096, 0, "cuda")
        result["sklearn_array_api"] = {"ours": em_iteration(X, args.codebook_size, "fp32", args.repeats),
                                       "sklearn": sklearn_array_api_iteration(X, args.codebook_size, 3)}
        del X
    if "cli" in sections:
        result["cli"] = cli_fit(unit_vectors(args.rows, args.dim, 4096, 0, "cuda"), args.levels, args.codebook_size,
                                args.iters)
    if "main" in sections:
        result["main"] = run(args.rows, args.dim, args.levels, args.codebook_size, args.iters, args.repeats,
                             args.precisions.split(","))
    if "scale" in sections:
        result["scale"] = scale(10_000_000, 256, 2, 256, 10)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "main"}, indent=2))
    if "main" in result:
        print(json.dumps({k: v for k, v in result["main"].items() if k != "precisions"}, indent=2))
        print(table(result["main"]))


if __name__ == "__main__":
    main()
