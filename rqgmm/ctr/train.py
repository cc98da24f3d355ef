"""Train, predict and score CTR models; ``run_ctr`` does all of it in one call.

Training is Adam on binary cross-entropy over shuffled mini-batches gathered
from encoded rows (no DataLoader): the rows stay on the device where they fit
(otherwise they are gathered on the host in chunks and copied through pinned
memory), the loss is summed on the device and read once per epoch, and
early stopping reads one validation AUC (computed on the device) per epoch.
The best epoch's weights are restored.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from rqgmm.errors import InputError
from rqgmm.runtime.device import resolve_device, torch_threads
from rqgmm.runtime.seeding import child_seed, cpu_generator, forked_rng
from rqgmm.ctr.content import ItemContent
from rqgmm.ctr.features import FeatureBuilder
from rqgmm.ctr.log import LogPart
from rqgmm.ctr.models import ModelConfig, make_model
from rqgmm.ctr.optimizer import FusedAdam
from rqgmm.ctr.spec import FeatureSpec, FieldSpec
from rqgmm.ctr.tensors import Batch, CTRTensors

logger = logging.getLogger(__name__)

#: The batch the base learning rate is set for; larger batches scale it by sqrt(batch / REFERENCE_BATCH).
REFERENCE_BATCH = 1024
#: Automatic batches keep at least this many steps per epoch (the issue's 12-step epochs lost 0.026 AUC).
MIN_STEPS_PER_EPOCH = 100
#: Largest automatic batch per device type.
MAX_BATCH = {"cuda": 65536, "cpu": 8192}
#: Rows of the host → device chunks when the rows do not fit on the device.
STREAM_CHUNK = 1 << 22


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    The batch, when not given, follows the number of training rows N and the
    device: the largest power of two ``<= N / 100`` (at least 100 steps per
    epoch), clipped to ``[1024, 65536]`` on CUDA and ``[1024, 8192]`` on CPU.
    So MovieLens-sized logs (80k training rows) train at 1024 as before, a
    4M-row log at 32768 on a GPU, and 10^7 rows and more at 65536. Large
    batches take few, cheap steps; the clip at 100 steps per epoch keeps the
    number of updates that a one-pass CTR model needs (early stopping often
    keeps the first epoch).

    The learning rate, when not given, is ``4e-3 * sqrt(batch / 1024)`` (the
    square-root rule for Adam: the gradient noise falls with sqrt(batch)),
    with a linear warm-up over the first ``ceil(0.1 * steps per epoch)`` steps
    whenever the batch exceeds 1024. 4e-3 at batch 1024 is the rate tuned on
    MovieLens-100k: validation AUC peaks within 3-8 epochs, and patience 2
    rides out the one-epoch dips seen on the way. A learning rate or warm-up
    given explicitly is used as given.

    Parameters
    ----------
    lr : float or None
        Adam learning rate; None = the rule above.
    batch_size : int or None
        None = the rule above.
    warmup_steps : int or None
        Steps of linear warm-up from lr / steps to lr; None = the rule above.
    weight_decay : float
        Adam L2 penalty on every parameter.
    max_epochs : int
    patience : int
        Epochs without a better validation AUC before stopping.
    seed : int
        The parent of the named child seeds (:mod:`rqgmm.runtime.seeding`) of the batch order ("ctr batches")
        and dropout ("ctr dropout"), and of ``fit_and_score``'s initialisation ("ctr init").
    device : str
    eval_batch_size : int
        Rows per forward pass when predicting.
    num_threads : int or None
        torch intra-op threads while training and predicting (CPU), restored
        afterwards. None leaves torch's setting alone. These models are small:
        on a shared machine one thread is often as fast as two.
    progress : bool
        Show a tqdm bar over epochs.
    fused : bool
        Fused Adam (one kernel for every parameter; on CPU as on CUDA): :class:`~rqgmm.ctr.optimizer.FusedAdam`.
    compile : bool
        ``torch.compile`` the model (off by default: not measured to help yet;
        ``python -m rqgmm.bench.ctr --compile`` measures it).
    resident : bool or None
        Keep every row on the device (True), stream chunks from pinned host
        memory (False), or decide by free device memory (None).
    """

    lr: float | None = None
    batch_size: int | None = None
    warmup_steps: int | None = None
    weight_decay: float = 0.0
    max_epochs: int = 8
    patience: int = 2
    seed: int = 0
    device: str = "cpu"
    eval_batch_size: int = 65536
    num_threads: int | None = 1
    progress: bool = False
    fused: bool = True
    compile: bool = False
    resident: bool | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_epochs", "patience", "eval_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"{name} must be >= 1, got {value}")
        if (self.lr is not None and self.lr <= 0) or self.weight_decay < 0:
            raise InputError(f"lr must be > 0 and weight_decay >= 0, got {self.lr} and {self.weight_decay}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise InputError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.num_threads is not None and self.num_threads < 1:
            raise InputError(f"num_threads must be >= 1 or None, got {self.num_threads}")

    def batch_for(self, n_rows: int) -> int:
        """The batch for ``n_rows`` training rows (see the class docstring)."""
        if self.batch_size is not None:
            return self.batch_size
        cap = MAX_BATCH["cuda" if torch.device(self.device).type == "cuda" else "cpu"]
        steps = max(n_rows // MIN_STEPS_PER_EPOCH, 1)
        return int(min(max(2 ** int(math.log2(steps)), REFERENCE_BATCH), cap))

    def lr_for(self, batch: int) -> float:
        """The learning rate at ``batch``: the given one, or 4e-3 * sqrt(batch / 1024)."""
        return self.lr if self.lr is not None else 4e-3 * math.sqrt(batch / REFERENCE_BATCH)

    def warmup_for(self, batch: int, steps_per_epoch: int) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return math.ceil(0.1 * steps_per_epoch) if batch > REFERENCE_BATCH else 0


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model : nn.Module
        The trained model, holding the best validation epoch's weights.
    valid_auc : list of float
        Validation AUC after each epoch run.
    train_loss : list of float
        Mean training BCE per epoch.
    best_epoch : int
        0-based index into ``valid_auc`` of the restored epoch.
    seconds : float
        Wall-clock training time.
    batch_size, lr : int, float
        The batch and learning rate used.
    rows_per_second : float
        Training rows per second (validation excluded).
    """

    model: nn.Module
    valid_auc: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0
    batch_size: int = 0
    lr: float = 0.0
    rows_per_second: float = 0.0

    @property
    def best_auc(self) -> float:
        """Validation AUC of the restored epoch."""
        return self.valid_auc[self.best_epoch]


@dataclass
class CTRResult:
    """What :func:`run_ctr` returns.

    Attributes
    ----------
    predictions : ndarray, shape (N_test,)
        Click probabilities for the test rows, in their order.
    metrics : dict
        ``{"auc", "logloss"}`` on the test rows.
    training : TrainResult
    builder : FeatureBuilder or None
        The fitted features of frames (save it to score new rows later).
    """

    predictions: np.ndarray
    metrics: dict[str, float]
    training: TrainResult
    builder: FeatureBuilder | None = None


# ----------------------------------------------------------------------------- metrics


def score(y: np.ndarray | torch.Tensor, p: np.ndarray | torch.Tensor) -> dict[str, float]:
    """AUC and log-loss of probabilities ``p`` (N,) for 0/1 labels ``y`` (N,), in float64 on ``p``'s device.

    ``p`` and ``y`` may be numpy arrays (computed on the CPU) or tensors (``y`` is moved to ``p``'s device):
    a GPU run scores its test rows where they were predicted, with one host read. The AUC is :func:`auc`
    (the Mann-Whitney statistic, ties sharing their mean rank) and the log-loss clips ``p`` to
    ``[eps, 1 - eps]`` (float64's eps), as scikit-learn's ``roc_auc_score`` and ``log_loss`` do; both equal
    scikit-learn's up to float64 rounding (``tests/test_ctr.py``: within 1e-12).

    Raises
    ------
    InputError
        If ``y`` holds a single class (AUC is undefined), or ``p`` a NaN or an infinity (a diverged model).
    """
    p = torch.as_tensor(p).double()
    y = torch.as_tensor(y, device=p.device)
    positives, n = int(torch.count_nonzero(y)), len(y)
    if positives in (0, n):
        raise InputError("AUC needs both clicks and non-clicks in the labels, got one class only")
    bad = n - int(torch.isfinite(p).sum())
    if bad:
        raise InputError(f"{bad} of {n} predicted probabilities are NaN or infinite (the model diverged); "
                         "train with a smaller learning rate (TrainConfig.lr)")
    eps = torch.finfo(torch.float64).eps
    clipped = p.clamp(eps, 1 - eps)
    loss = -torch.where(y > 0, clipped.log(), (1 - clipped).log()).mean()
    return {"auc": float(auc(y, p)), "logloss": float(loss)}


def auc(labels: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """ROC AUC on the tensors' device: the Mann-Whitney statistic with tied scores sharing their mean rank.

    Equals ``sklearn.metrics.roc_auc_score`` (whose trapezoids count a tie as
    half a win). Reading the result is the caller's one host sync.

    Parameters
    ----------
    labels : Tensor (N,), 0/1
    scores : Tensor (N,)

    Returns
    -------
    Tensor, shape (), float64
    """
    ordered, order = torch.sort(scores)
    _, group, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    ranks = (ends - (counts.double() - 1) / 2)[group]               # 1-based mean rank of each tie group
    positive = labels[order].double()
    n_pos = positive.sum()
    n_neg = len(labels) - n_pos
    return ((ranks * positive).sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


# ----------------------------------------------------------------------------- batches


def _require_labels(tensors: CTRTensors, what: str) -> torch.Tensor:
    if tensors.labels is None:
        raise InputError(f"the {what} rows have no label column; training needs 0/1 labels")
    return tensors.labels


def _fits(tensors: CTRTensors, device: torch.device) -> bool:
    """Whether the rows fit on ``device`` with room to spare (host memory always does)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return tensors.nbytes < 0.5 * free


def placed(tensors: CTRTensors, device: str | torch.device, resident: bool | None = None) -> CTRTensors:
    """``tensors`` with the item block on ``device`` and the rows there too when resident.

    Non-resident rows stay on the host and :func:`batches` copies them chunk by chunk.
    """
    device = resolve_device(device)
    if resident is None:
        resident = _fits(tensors, device)
    if resident:
        return tensors.to(device)
    return CTRTensors(tensors.rows, tensors.items.to(device), tensors.item_rows, tensors.labels, tensors.names)


def batches(tensors: CTRTensors, order: torch.Tensor | None, batch_size: int,
            device: torch.device) -> Iterator[tuple[Batch, torch.Tensor | None]]:
    """(batch, labels) of ``batch_size`` rows on ``device``, in ``order`` (None: in row order).

    Resident rows are gathered on the device; host rows are gathered in chunks
    of :data:`STREAM_CHUNK` rows, pinned and copied without blocking.
    """
    n = len(tensors)
    if tensors.item_rows.device == device:
        order = None if order is None else order.to(device)
        for start in range(0, n, batch_size):
            index = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
            yield tensors.batch(index), None if tensors.labels is None else tensors.labels[index]
        return
    chunk_rows = max(STREAM_CHUNK // batch_size, 1) * batch_size
    for begin in range(0, n, chunk_rows):
        index = slice(begin, begin + chunk_rows) if order is None else order[begin:begin + chunk_rows]
        chunk = _to_device(tensors.part(index), device)
        for start in range(0, len(chunk), batch_size):
            rows = slice(start, start + batch_size)
            yield chunk.batch(rows), None if chunk.labels is None else chunk.labels[rows]


def _to_device(part: CTRTensors, device: torch.device) -> CTRTensors:
    """A host chunk on ``device``, through pinned memory where the device is a GPU."""
    pin = device.type == "cuda"
    rows = part.rows.pin_memory() if pin else part.rows
    move = lambda t: (t.pin_memory() if pin else t).to(device, non_blocking=pin)  # noqa: E731
    return CTRTensors(rows.to(device, non_blocking=pin), part.items, move(part.item_rows),
                      None if part.labels is None else move(part.labels), part.names)


@torch.no_grad()
def probabilities(model: nn.Module, tensors: CTRTensors, batch_size: int = 65536) -> torch.Tensor:
    """Click probabilities (N,) float32 on the model's device, without a host sync."""
    model.eval()
    device = next(model.parameters()).device
    tensors = placed(tensors, device, None)
    chunks = [torch.sigmoid(model(batch)) for batch, _ in batches(tensors, None, batch_size, device)]
    return torch.cat(chunks) if chunks else torch.zeros(0, device=device)


def predict(model: nn.Module, tensors: CTRTensors, batch_size: int = 65536) -> np.ndarray:
    """Click probabilities for every row of ``tensors``, shape (N,) float64."""
    return probabilities(model, tensors, batch_size).double().cpu().numpy()


# ----------------------------------------------------------------------------- training


class _Step:
    """One optimisation step: forward, BCE, backward, Adam, with the warm-up's learning rate.

    The fused Adam is :class:`~rqgmm.ctr.optimizer.FusedAdam` (torch's fused kernel without ``torch.optim``'s
    per-step Python; the same updates); without ``config.fused``, or on a device the kernel does not serve,
    ``torch.optim.Adam``.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, lr: float, warmup: int) -> None:
        params = list(model.parameters())
        if config.fused and FusedAdam.available(params):
            self.optimizer = FusedAdam(params, lr=lr, weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.Adam(params, lr=lr, weight_decay=config.weight_decay)
        self.forward = torch.compile(model) if config.compile else model
        self.lr, self.warmup, self.count = lr, warmup, 0

    def _set_lr(self, lr: float) -> None:
        if isinstance(self.optimizer, FusedAdam):
            self.optimizer.lr = lr
        else:
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def __call__(self, batch: Batch, labels: torch.Tensor) -> torch.Tensor:
        if self.count < self.warmup:
            self._set_lr(self.lr * (self.count + 1) / self.warmup)
        self.count += 1
        loss = nn.functional.binary_cross_entropy_with_logits(self.forward(batch), labels.float())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def _train_epoch(model: nn.Module, data: CTRTensors, step: _Step, batch_size: int, generator: torch.Generator,
                 device: torch.device) -> torch.Tensor:
    """One pass over ``data`` in a seeded random order; the summed BCE, on the device."""
    model.train()
    total = torch.zeros((), device=device)
    # the order is not kept here: once batches() has moved it to the device, its host copy goes; drawn as int32
    # (4 bytes a row on the host, not 8): torch gives the same permutation, and leaves the generator as int64 does
    dtype = torch.int32 if len(data) < 2**31 else torch.int64
    for batch, labels in batches(data, torch.randperm(len(data), generator=generator, dtype=dtype), batch_size,
                                 device):
        total += step(batch, labels) * len(labels)
    return total


def _valid_auc(model: nn.Module, valid: CTRTensors, batch_size: int) -> float:
    p = probabilities(model, valid, batch_size)
    value = float(auc(_require_labels(valid, "validation").to(p.device), p))  # the epoch's one read of the AUC
    if not math.isfinite(value):
        raise InputError("AUC needs both clicks and non-clicks in the labels, got one class only")
    return value


def train(model: nn.Module, train_tensors: CTRTensors, valid_tensors: CTRTensors,
          config: TrainConfig | None = None) -> TrainResult:
    """Fit ``model`` with Adam on BCE, early-stopped on validation AUC.

    Parameters
    ----------
    model : nn.Module
        From :func:`~rqgmm.ctr.models.make_model`; trained in place.
    train_tensors, valid_tensors : CTRTensors
        Labelled rows encoded alike (one FeatureBuilder, or one encoded log).
    config : TrainConfig, optional

    Returns
    -------
    TrainResult
        ``model`` holds the weights of the epoch with the best validation
        AUC; ``valid_auc`` has one entry per epoch run.
    """
    config = config or TrainConfig()
    started = time.perf_counter()
    device = resolve_device(config.device)
    _require_labels(train_tensors, "training")
    model.to(device)
    data = placed(train_tensors, device, config.resident)
    valid = placed(valid_tensors, device, config.resident)
    batch = config.batch_for(len(data))
    steps = math.ceil(len(data) / batch)
    lr = config.lr_for(batch)
    step = _Step(model, config, lr, config.warmup_for(batch, steps))
    generator = cpu_generator(child_seed(config.seed, "ctr batches"))
    result = TrainResult(model, batch_size=batch, lr=lr)
    best_state, stale, training_seconds = None, 0, 0.0
    # dropout draws from the global RNG: a forked one, so the caller's state is untouched
    with torch_threads(config.num_threads), forked_rng(device, child_seed(config.seed, "ctr dropout")):
        for epoch in tqdm(range(config.max_epochs), desc="ctr epochs", disable=not config.progress):
            began = time.perf_counter()
            total = _train_epoch(model, data, step, batch, generator, device)
            result.train_loss.append(float(total) / len(data))       # the epoch's one read of the loss
            training_seconds += time.perf_counter() - began
            result.valid_auc.append(_valid_auc(model, valid, config.eval_batch_size))
            logger.debug("epoch %d: loss %.4f, valid AUC %.4f", epoch, result.train_loss[-1], result.valid_auc[-1])
            if best_state is None or result.valid_auc[-1] > result.best_auc:
                result.best_epoch, stale = epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
                if stale >= config.patience:
                    break
    model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - started
    result.rows_per_second = len(data) * len(result.train_loss) / max(training_seconds, 1e-9)
    logger.debug("trained %s: best valid AUC %.4f at epoch %d of %d (%.1fs, batch %d, lr %.2g, %.0f rows/s)",
                 type(model).__name__, result.best_auc, result.best_epoch, len(result.valid_auc), result.seconds,
                 batch, lr, result.rows_per_second)
    return result


def fit_and_score(fields: Sequence[FieldSpec], tensors: Sequence[CTRTensors], backbone: str = "fnn",
                  model_config: ModelConfig | None = None, train_config: TrainConfig | None = None) -> CTRResult:
    """Train ``backbone`` on ``tensors`` (train, valid, test) and score the test rows."""
    train_config = train_config or TrainConfig()
    model = make_model(backbone, fields, model_config, seed=child_seed(train_config.seed, "ctr init"))
    training = train(model, tensors[0], tensors[1], train_config)
    with torch_threads(train_config.num_threads):
        probs = probabilities(training.model, tensors[2], train_config.eval_batch_size)
        metrics = score(_require_labels(tensors[2], "test"), probs)
    return CTRResult(probs.double().cpu().numpy(), metrics, training)


def run_ctr(
    train_frame,
    valid_frame,
    test_frame,
    spec: FeatureSpec,
    *,
    users: pd.DataFrame | None = None,
    items: pd.DataFrame | None = None,
    content: Sequence[ItemContent] = (),
    backbone: str = "fnn",
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
) -> CTRResult:
    """Build features, train one backbone, and score the test rows.

    Parameters
    ----------
    train_frame, valid_frame, test_frame : DataFrame, or parts of an EncodedLog
        Interaction rows with the spec's columns and its 0/1 label; or the
        train / valid / test parts of one :class:`~rqgmm.ctr.log.EncodedLog`
        (already encoded: ``users`` and ``items`` are then not used, the log
        holds its item table). Frames are encoded by a :class:`FeatureBuilder`
        (an adapter over the log encoder); both then take one path.
    spec : FeatureSpec
    users, items : DataFrame, optional
        Tables the spec's columns may live in (see :meth:`FeatureBuilder.fit`).
    content : sequence of ItemContent
        The content variant: nothing ("none"), embeddings, codes, or both.
    backbone : str
        A name of :data:`~rqgmm.ctr.models.BACKBONES`.
    model_config : ModelConfig, optional
    train_config : TrainConfig, optional
        Its ``seed`` is also the parent of the initialisation's child seed ("ctr init").

    Returns
    -------
    CTRResult
        Test probabilities (N_test,), test ``{"auc", "logloss"}``, the
        training record and, for frames, the fitted builder.
    """
    parts = (train_frame, valid_frame, test_frame)
    builder = None if isinstance(train_frame, LogPart) else \
        FeatureBuilder(spec).fit(train_frame, users=users, items=items, content=content)
    encoded = train_frame.log if builder is None else builder  # frames: the adapter over a log
    fields, tensors = encoded.tensors(spec, content, parts, (train_config or TrainConfig()).device)
    result = fit_and_score(fields, tensors, backbone, model_config, train_config)
    result.builder = builder
    return result
