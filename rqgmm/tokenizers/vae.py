"""RQ-VAE and VQ-VAE: an MLP autoencoder with (residual) vector quantization.

The TIGER recipe (Rajput et al., 2023): an MLP encoder maps an embedding x (D)
to a latent z (``latent_dim``); L levels of residual vector quantization pick
codewords e_1..e_L, r_1 = z, r_{l+1} = r_l - e_l; an MLP decoder maps the sum
z_q = e_1 + ... + e_L back to x. The loss is

    ||x - decoder(z_q)||^2 + sum_l ( ||sg(r_l) - e_l||^2 + beta ||r_l - sg(e_l)||^2 )

(reconstruction + codebook + commitment; all mean squared errors), with the
straight-through estimator carrying the decoder's gradient to the encoder.
Codebooks are learned by the loss (Adam), not by EMA.

Training details
----------------
- Codebook initialisation: k-means (:class:`rqgmm.tokenizers.kmeans.KMeans`) on the
  latents of the untrained encoder, level by level on the residuals; on the
  whole training split up to ``init_size`` items (TIGER uses "the first
  batch"; a larger sample gives every code a point to start from).
- Dead-code restarts: after every epoch each code that no training item used
  during that epoch is re-seeded from the latent residual of a random training
  item at its level (``restart_dead_codes``). The first epochs move the
  latents away from the initial codebooks and leave most codes dead once;
  the restarts are what recovers them.
- Early stopping: a seeded ``holdout`` share of the items (5%) is kept out of
  training; training stops after ``patience`` epochs without a lower held-out
  reconstruction error of the quantized path, and the best epoch's weights
  are kept. With fewer than 20 items no hold-out is taken and all epochs run.
- Determinism: weights, the split, shuffling, k-means and restarts all draw
  from generators seeded by ``random_state``; the global torch RNG is left
  untouched. Same seed on CPU gives the same codes.

Defaults (why)
--------------
==================  ===============  =============================================
parameter           default          why
==================  ===============  =============================================
hidden_sizes        (512, 256, 128)  TIGER's encoder; the decoder mirrors it
latent_dim          32               TIGER's latent size
epochs              100              cap for small inputs; early stopping often
                                     ends sooner
max_steps           1200             cap on Adam steps (whole epochs): about 25 s
                                     on 2 CPU cores at 384-d, whatever N is;
                                     9,000 items get ~35 epochs
batch_size          256              the best error per second of the batch
                                     sizes tried (128-512) on 2,000-9,000 items
lr                  1e-3             Adam's usual rate; 3e-3 was no faster
beta                0.25             the commitment weight of VQ-VAE and TIGER
holdout             0.05             5% of items for early stopping
patience            10               epochs without held-out improvement
restart_dead_codes  True             keeps codebook utilization up
init_size           16384            cap on the k-means initialisation sample
==================  ===============  =============================================

VQ-VAE codebook size
--------------------
:class:`VQVAE` is the same model with one level. Its default codebook size is
the per-level K (256), not the K^L codes that would match an RQ setting's bits
(2 x 128 -> 2^14 = 16384): with a few thousand items a 16384-entry codebook is
mostly dead and its k-means initialisation alone would need more points than
there are items. The comparison the study makes is therefore "one level of K
codes" against "L levels of K codes" -- the paper's weakest baseline, as
reported. Pass ``codebook_size=16384`` for the equal-bits variant.

Why not ``vector-quantize-pytorch``
-----------------------------------
Its ``ResidualVQ`` updates codebooks by EMA by default and routes gradients
with the rotation trick; configured for a learnable codebook, its loss is
``beta * ||q - x||^2`` with the gradient reaching both the codebook and the
encoder, not TIGER's codebook + beta-commitment split. Dead codes are judged
by an EMA count per step, and its k-means init and restarts draw from the
global torch RNG. The residual loop here is a few lines, so it is written out.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from rqgmm.runtime.device import default_device, resolve_device
from rqgmm.errors import InputError
from rqgmm.tokenizers.kmeans import KMeans, squared_distances
from rqgmm.tokenizers.level import COMMON_CONSTRAINTS, progress_disabled
from rqgmm.runtime.seeding import child_seed, child_seeds, cpu_generator, int_seed
from rqgmm.tokenizers.residual import STACK_CONSTRAINTS, codebook_size_list
from rqgmm.tokenizers.base import Tokenizer, register
from rqgmm.ids.codes import as_codes
from rqgmm.runtime.validation import ANY, Integer, Real, Rule, as_matrix, check_positive_int, like_input
from rqgmm.tokenizers.walk import codeword_sum, residual_walk

logger = logging.getLogger(__name__)

ENCODE_CHUNK = 8192
MIN_ITEMS_FOR_HOLDOUT = 20


# ----------------------------------------------------------------- tensor functions


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers between consecutive ``sizes`` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i > 0:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)


def nearest_code(residual: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index (N,) int64 of the nearest codeword (K, d) to each residual (N, d)."""
    return squared_distances(residual, codebook).argmin(dim=1)


def nearest_walk(z: torch.Tensor, codebooks: list[torch.Tensor], choose=None):
    """The VAEs' residual walk over latents z (N, d): (level, residual, code) per level.

    Codes are the nearest codewords unless ``choose(level, residual)`` says
    otherwise; the next residual subtracts the codeword without its gradient,
    so a residual keeps the gradient of z alone.
    """
    choose = choose or (lambda level, residual: nearest_code(residual.detach(), codebooks[level].detach()))
    return residual_walk(z, codebooks, choose, lambda residual, codeword: residual - codeword.detach())


def residual_codes(z: torch.Tensor, codebooks: list[torch.Tensor]) -> torch.Tensor:
    """Codes (N, L) int64 of latents z (N, d) by residual quantization with codebooks (K_l, d)."""
    return torch.stack([code for _, _, code in nearest_walk(z, codebooks)], dim=1)


@dataclass
class QuantizerOutput:
    """What one pass of the residual quantizer returns in training."""

    quantized: torch.Tensor  # (N, d) straight-through: forward value z_q, gradient to z
    codes: torch.Tensor  # (N, L) int64
    loss: torch.Tensor  # scalar: codebook + beta * commitment, summed over levels


class ResidualVQ(nn.Module):
    """L codebooks (K_l, d) learned by the codebook/commitment loss.

    Parameters
    ----------
    codebook_sizes : list of int
        K_l per level; one entry makes a plain VQ layer.
    dim : int
        Latent dimension d.
    beta : float
        Commitment weight.
    """

    def __init__(self, codebook_sizes: list[int], dim: int, beta: float) -> None:
        super().__init__()
        self.beta = beta
        self.codebooks = nn.ParameterList([nn.Parameter(torch.randn(k, dim) * 0.01) for k in codebook_sizes])

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize z (N, d); see :class:`QuantizerOutput`."""
        total = torch.zeros_like(z)
        loss = z.new_zeros(())
        codes = []
        for level, residual, code in nearest_walk(z, list(self.codebooks)):
            e = self.codebooks[level][code]
            loss = loss + F.mse_loss(e, residual.detach()) + self.beta * F.mse_loss(residual, e.detach())
            total = total + e.detach()
            codes.append(code)
        quantized = z + (total - z).detach()
        return QuantizerOutput(quantized, torch.stack(codes, dim=1), loss)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of the codewords (N, d) named by codes (N, l), l <= L."""
        return codeword_sum(list(self.codebooks), codes)


class Autoencoder(nn.Module):
    """MLP encoder, residual quantizer, mirrored MLP decoder."""

    def __init__(
        self, n_features: int, hidden_sizes: list[int], latent_dim: int, codebook_sizes: list[int], beta: float
    ) -> None:
        super().__init__()
        self.encoder = mlp([n_features, *hidden_sizes, latent_dim])
        self.quantizer = ResidualVQ(codebook_sizes, latent_dim, beta)
        self.decoder = mlp([latent_dim, *reversed(hidden_sizes), n_features])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """Reconstruction (N, D) and the quantizer's output for x (N, D)."""
        q = self.quantizer(self.encoder(x))
        return self.decoder(q.quantized), q

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (N, L) of x (N, D)."""
        return residual_codes(self.encoder(x), list(self.quantizer.codebooks))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstruction (N, D) from codes (N, l), l <= L: the decoder of the summed codewords."""
        return self.decoder(self.quantizer.lookup(codes))

    @torch.no_grad()
    def reconstruction_error(self, x: torch.Tensor) -> float:
        """Mean squared error per coordinate of the quantized reconstruction of x (N, D)."""
        total = 0.0
        for start in range(0, x.shape[0], ENCODE_CHUNK):
            chunk = x[start : start + ENCODE_CHUNK]
            total += float(((self.decode(self.codes(chunk)) - chunk) ** 2).sum())
        return total / x.numel()


# ----------------------------------------------------------------------- training steps


def split_holdout(n: int, share: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split of range(n) into (train, held-out) index tensors (CPU, int64)."""
    perm = torch.randperm(n, generator=generator)
    n_val = int(round(n * share)) if n >= MIN_ITEMS_FOR_HOLDOUT else 0
    return perm[n_val:], perm[:n_val]


@torch.no_grad()
def init_codebooks(model: Autoencoder, X: torch.Tensor, seed: int | None) -> None:
    """k-means each level's codebook on the residual latents of X (n, D), level by level."""
    codebooks = list(model.quantizer.codebooks)
    seeds = child_seeds(seed, "levels", len(codebooks))

    def fit_codebook(level: int, residual: torch.Tensor) -> torch.Tensor:
        codebook = codebooks[level]
        km = KMeans(codebook.shape[0], max_iter=25, random_state=seeds[level], progress=False,
                    name=f"level {level + 1}").fit(residual)
        centres = km.cluster_centers_
        if centres.shape[0] < codebook.shape[0]:
            # Fewer distinct latents than codes: the rest start as copies; restarts spread them.
            extra = torch.randint(centres.shape[0], (codebook.shape[0] - centres.shape[0],),
                                  generator=cpu_generator(child_seed(seeds[level], "copies"))).to(centres.device)
            centres = torch.cat([centres, centres[extra]])
        codebook.copy_(centres)
        return nearest_code(residual, codebook)

    for _ in nearest_walk(model.encoder(X), codebooks, fit_codebook):
        pass


@torch.no_grad()
def restart_dead_codes(model: Autoencoder, X: torch.Tensor, usage: list[torch.Tensor], generator: torch.Generator) -> int:
    """Re-seed codes unused over the last epoch from random current residuals.

    Parameters
    ----------
    X : Tensor (n, D)
        Training items to draw residuals from.
    usage : list of L tensors (K_l,)
        How many training items chose each code during the epoch.

    Returns
    -------
    int : the number of codes re-seeded over all levels.
    """
    sample = X[torch.randperm(X.shape[0], generator=generator)[: min(X.shape[0], 8192)].to(X.device)]
    codebooks = list(model.quantizer.codebooks)
    restarted = 0

    def restart(level: int, residual: torch.Tensor) -> torch.Tensor:
        nonlocal restarted
        dead = torch.nonzero(usage[level] == 0).flatten()
        if len(dead):
            pick = torch.randperm(residual.shape[0], generator=generator)[: len(dead)].to(residual.device)
            codebooks[level][dead[: len(pick)]] = residual[pick]
            restarted += len(pick)
        return nearest_code(residual, codebooks[level])

    for _ in nearest_walk(model.encoder(sample), codebooks, restart):
        pass
    return restarted


def train_epoch(
    model: Autoencoder, optimizer: torch.optim.Optimizer, X: torch.Tensor, batch_size: int, generator: torch.Generator
) -> tuple[float, list[torch.Tensor]]:
    """One pass over X (n, D) in shuffled batches.

    Returns
    -------
    loss : float, the mean training loss over batches
    usage : list of L tensors (K_l,), how often each code was chosen
    """
    model.train()
    usage = [torch.zeros(cb.shape[0], dtype=torch.int64, device=X.device) for cb in model.quantizer.codebooks]
    order = torch.randperm(X.shape[0], generator=generator).to(X.device)
    total, n_batches = 0.0, 0
    for start in range(0, X.shape[0], batch_size):
        x = X[order[start : start + batch_size]]
        recon, q = model(x)
        loss = F.mse_loss(recon, x) + q.loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for level, counts in enumerate(usage):
            counts += torch.bincount(q.codes[:, level], minlength=counts.shape[0])
        total += float(loss.detach())
        n_batches += 1
    model.eval()
    return total / n_batches, usage


def check_hidden_sizes(hidden_sizes) -> None:
    """Raise InputError unless ``hidden_sizes`` is a sequence of ints >= 1."""
    try:
        sizes = list(hidden_sizes)
    except TypeError:
        raise InputError(f"hidden_sizes must be a list of ints, got {hidden_sizes!r}") from None
    for h in sizes:
        check_positive_int("hidden_sizes entry", h)


# ------------------------------------------------------------------------ estimators


@register
class RQVAE(Tokenizer):
    """Residual-quantized variational autoencoder (TIGER): L levels over a learned latent.

    Parameters
    ----------
    levels : int
        Number of code levels L.
    codebook_size : int or list of int
        Codes per level K_l (one int for all levels, or L ints).
    latent_dim : int
        Dimension d of the latent that is quantized.
    hidden_sizes : sequence of int
        Encoder widths from the input down; the decoder mirrors them.
    epochs : int
        Maximum training epochs.
    max_steps : int
        Maximum Adam steps: training ends after the (whole) epoch in which this
        many steps are reached. Bounds the fit time on large inputs.
    batch_size : int
        Items per Adam step.
    lr : float
        Adam learning rate.
    beta : float
        Commitment weight.
    holdout : float in [0, 0.5]
        Share of items held out for early stopping.
    patience : int
        Epochs without held-out improvement before stopping.
    restart_dead_codes : bool
        Re-seed codes unused over an epoch from random current residuals.
    init_size : int
        Cap on the number of items whose latents seed the k-means initialisation.
    random_state : int, optional
        Seed for weights, split, shuffling, k-means and restarts (each its own
        child seed, :mod:`rqgmm.runtime.seeding`).
    device : str or torch.device, optional
        Where to train (default: where the input is; numpy input: the CPU);
        encoding runs where the fitted network is.
    progress : bool, optional
        tqdm bar over epochs; None lets tqdm decide (only on a terminal).

    Attributes
    ----------
    model_ : Autoencoder
        The trained network (eval mode).
    n_features_in_ : int
        Input dimension D.
    n_epochs_ : int
        Epochs trained (including those after the best one).
    n_steps_ : int
        Adam steps taken.
    best_epoch_ : int
        Epoch whose weights were kept.
    best_loss_ : float
        Its held-out reconstruction MSE (training loss without a hold-out).
    history_ : list of dict
        Per epoch: ``train_loss``, ``val_mse``, ``restarted``.
    """

    method: ClassVar[str] = "rqvae"
    iteration_param: ClassVar[str] = "epochs"
    _parameter_constraints: ClassVar[dict] = {
        **{k: STACK_CONSTRAINTS[k] for k in ("levels", "codebook_size")},
        **{k: COMMON_CONSTRAINTS[k] for k in ("random_state", "device", "progress")},
        "latent_dim": Integer(1), "hidden_sizes": Rule(check_hidden_sizes), "epochs": Integer(1),
        "max_steps": Integer(1), "batch_size": Integer(1), "lr": Real(0, open_low=True), "beta": Real(0),
        "holdout": Real(0, 0.5), "patience": Integer(1), "restart_dead_codes": ANY, "init_size": Integer(1),
    }

    def __init__(
        self,
        levels: int = 3,
        codebook_size: int | list[int] = 256,
        *,
        latent_dim: int = 32,
        hidden_sizes: tuple[int, ...] | list[int] = (512, 256, 128),
        epochs: int = 100,
        max_steps: int = 1200,
        batch_size: int = 256,
        lr: float = 1e-3,
        beta: float = 0.25,
        holdout: float = 0.05,
        patience: int = 10,
        restart_dead_codes: bool = True,
        init_size: int = 16384,
        random_state: int | None = None,
        device: str | torch.device | None = None,
        progress: bool | None = None,
    ) -> None:
        self.levels = levels
        self.codebook_size = codebook_size
        self.latent_dim = latent_dim
        self.hidden_sizes = hidden_sizes
        self.epochs = epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.lr = lr
        self.beta = beta
        self.holdout = holdout
        self.patience = patience
        self.restart_dead_codes = restart_dead_codes
        self.init_size = init_size
        self.random_state = random_state
        self.device = device
        self.progress = progress

    def _check_params(self) -> None:
        """The declared constraints, and one size per level (also called by the command line before it reads data)."""
        super()._check_params()
        codebook_size_list(self.codebook_size, self.levels)

    # -------------------------------------------------------------------- fit

    def fit(self, X, y=None) -> "RQVAE":
        """Train on X (N, D); returns self. ``y`` is ignored."""
        self._check_params()
        X = as_matrix(X, device=default_device(X, self.device))
        generator = cpu_generator(child_seed(self.random_state, "training"))  # split, batches, restarts
        train_idx, val_idx = split_holdout(X.shape[0], float(self.holdout), generator)
        X_train, X_val = X[train_idx.to(X.device)], X[val_idx.to(X.device)]
        self.n_features_in_ = X.shape[1]
        self.model_ = self._build(child_seed(self.random_state, "weights")).to(X.device)
        init = X_train[torch.randperm(X_train.shape[0], generator=generator)[: self.init_size].to(X.device)]
        init_codebooks(self.model_, init, child_seed(self.random_state, "codebooks"))
        self._train(X_train, X_val, generator)
        return self

    def _build(self, seed: int | None) -> Autoencoder:
        # Weights drawn inside a forked RNG so the user's global torch state is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int_seed(seed))
            return Autoencoder(self.n_features_in_, [int(h) for h in self.hidden_sizes], int(self.latent_dim),
                               self.codebook_sizes, float(self.beta))

    def _train(self, X_train: torch.Tensor, X_val: torch.Tensor, generator: torch.Generator) -> None:
        optimizer = torch.optim.Adam(self.model_.parameters(), lr=float(self.lr))
        best_state, best, wait = None, float("inf"), 0
        self.history_ = []
        steps_per_epoch = -(-X_train.shape[0] // self.batch_size)
        n_epochs = min(self.epochs, -(-self.max_steps // steps_per_epoch))
        bar = tqdm(range(1, n_epochs + 1), desc=f"{self.method} training", leave=False, disable=progress_disabled(self.progress))
        for epoch in bar:
            train_loss, usage = train_epoch(self.model_, optimizer, X_train, self.batch_size, generator)
            restarted = restart_dead_codes(self.model_, X_train, usage, generator) if self.restart_dead_codes else 0
            score = self.model_.reconstruction_error(X_val) if len(X_val) else train_loss
            self.history_.append({"train_loss": train_loss, "val_mse": score, "restarted": restarted})
            bar.set_postfix(loss=f"{train_loss:.4g}", val=f"{score:.4g}", restarted=restarted)
            logger.debug("%s epoch %d: loss %.5g, held-out mse %.5g, %d codes restarted",
                         self.method, epoch, train_loss, score, restarted)
            if score < best:
                best_state, best, wait, self.best_epoch_ = copy.deepcopy(self.model_.state_dict()), score, 0, epoch
            else:
                wait += 1
                if wait >= self.patience:
                    break
        bar.close()
        if best_state is None:
            raise InputError(f"{self.method} training diverged (the loss is not finite); lower lr or scale the input")
        self.model_.load_state_dict(best_state)
        self.model_.eval()
        self.n_epochs_, self.best_loss_, self.n_steps_ = epoch, best, epoch * steps_per_epoch
        logger.info("%s: %d epochs, kept epoch %d (held-out mse %.5g)", self.method, epoch, self.best_epoch_, best)

    # ----------------------------------------------------------- encode/decode

    def encode(self, X) -> np.ndarray | torch.Tensor:
        """Codes (N, L) int64 of X (N, D); numpy in, numpy out. Never changes the model."""
        self._check_fitted()
        x = as_matrix(X, device=self._model_device, n_features=self.n_features_in_)
        codes = torch.cat([self.model_.codes(x[s : s + ENCODE_CHUNK]) for s in range(0, x.shape[0], ENCODE_CHUNK)])
        return like_input(codes, X)

    def decode(self, codes) -> np.ndarray | torch.Tensor:
        """Reconstruction (N, D) of codes (N, l): the decoder applied to the sum of the first l codewords."""
        self._check_fitted()
        c = as_codes(codes, levels=self.levels, codebook_sizes=self.codebook_sizes).to(self._model_device)
        if c.shape[0] == 0:
            return like_input(torch.zeros(0, self.n_features_in_, device=self._model_device), codes)
        out = torch.cat([self.model_.decode(c[s : s + ENCODE_CHUNK]) for s in range(0, c.shape[0], ENCODE_CHUNK)])
        return like_input(out, codes)

    def to(self, device) -> "RQVAE":
        """Move the fitted network to ``device``; returns self."""
        device = resolve_device(device)
        self.device = str(device)
        if hasattr(self, "model_"):
            self.model_.to(device)
        return self

    @property
    def _model_device(self) -> torch.device:
        """Where the fitted network is: encoding and decoding run there."""
        return next(self.model_.parameters()).device

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise InputError(f"this {type(self).__name__} is not fitted yet; call fit(X) first")

    # ---------------------------------------------------------------- state

    @property
    def codebook_sizes(self) -> list[int]:
        return codebook_size_list(self.codebook_size, self.levels)

    # Constructor arguments that a model file records (with ``levels``).
    _CONFIG_KEYS: ClassVar[tuple[str, ...]] = (
        "codebook_size", "latent_dim", "hidden_sizes", "epochs", "max_steps", "batch_size", "lr", "beta",
        "holdout", "patience", "restart_dead_codes", "init_size", "random_state",
    )

    def get_config(self) -> dict:
        self._check_fitted()
        return {
            "levels": self.levels,
            **{key: getattr(self, key) for key in self._CONFIG_KEYS},
            "codebook_size": self.codebook_sizes, "hidden_sizes": [int(h) for h in self.hidden_sizes],
            "n_features": self.n_features_in_,
            "n_epochs": self.n_epochs_,
            "n_steps": self.n_steps_,
            "best_epoch": self.best_epoch_,
            "best_loss": self.best_loss_,
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        self._check_fitted()
        return dict(self.model_.state_dict())

    @classmethod
    def from_state(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "RQVAE":
        tok = cls(levels=config["levels"], **{key: config[key] for key in cls._CONFIG_KEYS})
        tok._check_params()
        tok.n_features_in_ = int(config["n_features"])
        tok.n_epochs_, tok.n_steps_ = config["n_epochs"], config["n_steps"]
        tok.best_epoch_, tok.best_loss_ = config["best_epoch"], config["best_loss"]
        tok.model_ = tok._build(0)
        tok.model_.load_state_dict(tensors, strict=True)
        tok.model_.eval()
        return tok


def check_one_level(levels) -> None:
    """Raise InputError unless ``levels`` is 1 (VQ-VAE's one codebook)."""
    if isinstance(levels, bool) or levels != 1:
        raise InputError(f"VQVAE has exactly one level, got levels={levels!r}; pass levels=1 (--levels 1) "
                         "or use RQVAE (--method rqvae) for more")


@register
class VQVAE(RQVAE):
    """VQ-VAE: the :class:`RQVAE` network with a single codebook of ``codebook_size`` codes.

    Takes every :class:`RQVAE` parameter; ``levels`` must be 1. The default
    K = 256 is the per-level size of the compared RQ settings, not the
    equal-bits K^L (see the module docstring).
    """

    method: ClassVar[str] = "vqvae"
    fixed_levels: ClassVar[int | None] = 1
    _parameter_constraints: ClassVar[dict] = {**RQVAE._parameter_constraints, "levels": Rule(check_one_level)}

    @classmethod
    def _get_param_names(cls) -> list[str]:
        return RQVAE._get_param_names()  # the same parameters; its constructor forwards them

    def __init__(self, codebook_size: int | list[int] = 256, *, levels: int = 1, **kwargs) -> None:
        super().__init__(levels=levels, codebook_size=codebook_size, **kwargs)

