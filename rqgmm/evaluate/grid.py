"""The grid of an evaluation: jobs with stable keys, a store of finished runs, and their spread over ranks.

- **Keys.** A job (a tokenizer fit or a CTR run) is named by its kind, the
  values that identify it in the grid (regime, seed, variant, backbone, ...)
  and the fingerprint of the settings every run depends on; its key is a hash
  of the three, so the same job under the same settings has the same key in
  every process and every re-run.
- **Store.** Each finished run is written to ``OUT/runs/<key>.json`` (its
  record) and ``OUT/runs/<key>.npz`` (a tokenizer's codes; a CTR run's test
  predictions, float32, for the bootstrap intervals of the verdict), each
  atomically, as soon as it finishes. ``OUT/runs/grid.json`` holds the
  settings; a re-run with other settings is refused. A re-run with the same
  ``--out`` loads the finished runs and runs only the others, so a killed
  grid loses the runs in flight, no more.
- **Ranks.** Under ``torchrun`` the pending jobs are dealt round-robin over
  the ranks, in the order of their keys (a hash: a deterministic shuffle that
  mixes cheap and costly jobs); each rank stores its own runs as they finish,
  then every rank receives every result (``all_gather_object``). The arrays of
  the kinds kept on disk (a CTR run's predictions) are not sent: every rank
  receives their file names, and rank 0 reads the files when the verdict
  needs them (a rank on another machine sends the arrays of the runs whose
  files rank 0 cannot see, and rank 0 stores them). Rank 0 reads
  the store and sends the finished runs to all, so every rank deals the same
  pending list. A rank that dies ends the torchrun group (torchrun stops the
  others); the runs stored so far stay for the re-run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from rqgmm.files.atomic import atomic_output
from rqgmm.errors import InputError
from rqgmm.evaluate.names import MANIFEST, RUNS
from rqgmm.runtime.heap import release_free_memory
from rqgmm.runtime.parallel import alone, broadcast_from_writer, gather_everywhere, rank_and_size

logger = logging.getLogger(__name__)

TAIL_BYTES = 1 << 16


def fingerprint(value) -> str:
    """A stable 16-hex-digit digest of a JSON-able value (keys sorted)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_fingerprint(path: str | os.PathLike) -> dict:
    """A file's size and a hash of its last 64 KiB: cheap, and for a parquet file it covers the footer
    (row counts, schema and every row group's min/max statistics), so another log is told apart."""
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - TAIL_BYTES))
        return {"size": size, "tail_sha256": hashlib.sha256(handle.read()).hexdigest()[:16]}


@dataclass(frozen=True)
class Job:
    """One run of the grid: its kind (``"tokenizer"`` or ``"ctr"``), what identifies it, and a label for logs."""

    kind: str
    ident: dict
    label: str


def job_key(job: Job, settings: str) -> str:
    """``KIND-HASH``: the hash of the job's kind, identity and settings fingerprint (a file name)."""
    return f"{job.kind}-{fingerprint([job.kind, job.ident, settings])}"


@dataclass
class Result:
    """What a job produced.

    Attributes
    ----------
    record : dict
        The JSON-able record that goes into ``results.json``.
    arrays : dict of str -> ndarray
        Arrays later jobs need (a tokenizer's codes); stored beside the record.
    summary : str
        One line for the log (not stored).
    rows : int
        Training rows processed (rows x epochs), for the rows/s in the log; 0 when it does not apply.
    """

    record: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    summary: str = ""
    rows: int = 0


@dataclass(frozen=True)
class StoredArray:
    """One array of a stored run, read from its ``.npz`` when ``np.asarray`` asks for it (never held)."""

    path: Path
    name: str

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        with np.load(self.path) as stored:
            array = stored[self.name]
        return array if dtype is None else array.astype(dtype, copy=False)


@dataclass(frozen=True, eq=False)
class StoredArrays(Mapping):
    """A stored run's arrays by name, each read from its ``.npz`` when asked for (one at a time, never held).

    ``lazy(name)`` is a :class:`StoredArray`: what a caller keeps instead of the array."""

    path: Path
    names: tuple[str, ...]

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise KeyError(name)
        return np.asarray(self.lazy(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def lazy(self, name: str) -> StoredArray:
        return StoredArray(self.path, name)


def _flat(settings: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in settings.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


class RecordStore:
    """Finished runs under ``out/runs``, for the settings ``settings`` (a JSON-able dict)."""

    def __init__(self, out: str | os.PathLike, settings: dict) -> None:
        self.out, self.directory = Path(out), Path(out) / RUNS
        self.settings = json.loads(json.dumps(settings, default=str))
        self.fingerprint = fingerprint(self.settings)

    def check(self, explain: Callable[[dict, list[str]], str | None] | None = None) -> None:
        """Refuse (InputError) when ``out`` holds the runs of other settings.

        ``explain(theirs, differ)`` (the stored settings, the names of the settings that differ) may give the
        cause in words; the message then says ``--out OUT`` and that, instead of the first differences."""
        path = self.directory / MANIFEST
        if not path.is_file():
            return
        try:
            theirs = json.loads(path.read_text())["settings"]
        except (OSError, ValueError, KeyError, TypeError):
            raise InputError(f"--out {self.out}: {path} is unreadable; pass a new --out") from None
        if fingerprint(theirs) == self.fingerprint:
            return
        there, here = _flat(theirs), _flat(self.settings)
        differ = [k for k in sorted(set(there) | set(here)) if there.get(k) != here.get(k)]
        cause = explain(theirs, differ) if explain is not None else None
        if cause:
            raise InputError(f"--out {self.out} {cause}")
        differ = differ[:3]
        shown = "; ".join(f"{k}: {there.get(k)!r} there, {here.get(k)!r} here" for k in differ)
        raise InputError(f"--out {self.out} holds runs made with other settings ({shown}); pass a new --out, "
                         "or the settings of those runs to resume them")

    def open(self) -> None:
        """Create ``out/runs`` and its settings file (idempotent: the same content from every rank)."""
        self.check()
        self.directory.mkdir(parents=True, exist_ok=True)
        if not (self.directory / MANIFEST).is_file():
            with atomic_output(self.directory / MANIFEST) as tmp:
                tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "settings": self.settings}, indent=1))

    def finished(self, keys: Sequence[str], on_disk: Collection[str] = ()) -> dict[str, Result]:
        """The stored results among ``keys`` (a record that cannot be read is run again); the arrays of the job
        kinds ``on_disk`` stay in their files (:class:`StoredArrays`), the others are read."""
        out = {}
        for key in keys:
            path = self.directory / f"{key}.json"
            if not path.is_file():
                continue
            try:
                entry = json.loads(path.read_text())
                arrays = {}
                if entry.get("arrays") and entry.get("kind") in on_disk:
                    arrays = self.arrays(key, entry["arrays"])
                elif entry.get("arrays"):
                    with np.load(self.directory / f"{key}.npz") as stored:
                        arrays = {name: stored[name] for name in entry["arrays"]}
                out[key] = Result(entry["record"], arrays)
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("%s cannot be read (%s); running it again", path, exc)
        return out

    def has(self, key: str) -> bool:
        return (self.directory / f"{key}.json").is_file()

    def arrays(self, key: str, names: Sequence[str]) -> StoredArrays:
        """The stored arrays ``names`` of run ``key``, left in their file."""
        return StoredArrays(self.directory / f"{key}.npz", tuple(names))

    def put(self, key: str, job: Job, result: Result, **meta) -> None:
        """Store one finished run: its arrays first, then its record (the record's presence marks it finished)."""
        if result.arrays:
            with atomic_output(self.directory / f"{key}.npz") as tmp:
                with open(tmp, "wb") as handle:
                    np.savez(handle, **result.arrays)
        entry = dict(key=key, kind=job.kind, job=job.ident, settings=self.fingerprint, arrays=sorted(result.arrays),
                     **meta, record=result.record)
        with atomic_output(self.directory / f"{key}.json") as tmp:
            tmp.write_text(json.dumps(entry, indent=1, default=json_default) + "\n")


def json_default(value):
    """numpy scalars in a record as JSON numbers."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"not JSON-serialisable: {type(value)}")


def deal(keys: Sequence[str], rank: int, size: int) -> list[str]:
    """This rank's share of the job keys: sorted, then dealt round-robin (the i-th to rank i mod size)."""
    return sorted(keys)[rank::size]


class Grid:
    """Runs the jobs of an evaluation: skips finished ones, spreads the rest over ranks, stores and gathers.

    Parameters
    ----------
    store : RecordStore or None
        Where finished runs are kept (None: nothing is kept; every job runs).
    progress : bool
        Show one bar over this rank's runs (rank 0 only).
    desc : str
        The bar's label.
    meta : dict
        Stored with each run (e.g. the device).
    on_disk : collection of str
        The job kinds whose arrays stay in the store once written (:class:`StoredArrays`), neither held nor
        gathered (without a store they are held).
    """

    def __init__(self, store: RecordStore | None, *, progress: bool, desc: str, meta: dict | None = None,
                 on_disk: Collection[str] = ()) -> None:
        self.store, self.desc, self.meta = store, desc, meta or {}
        self.on_disk = frozenset(on_disk) if store is not None else frozenset()
        self.rank, self.size = rank_and_size()
        self.progress = progress and self.rank == 0
        self.done: dict[str, Result] = {}
        self.bar = None

    def key(self, job: Job) -> str:
        return job_key(job, self.store.fingerprint if self.store is not None else "")

    def share(self, jobs: Sequence[Job]) -> dict[str, Job]:
        """This rank's pending jobs by key, in the order of ``jobs``."""
        by_key = {self.key(job): job for job in jobs}
        mine = set(deal([k for k in by_key if k not in self.done], self.rank, self.size))
        return {key: job for key, job in by_key.items() if key in mine}

    @contextlib.contextmanager
    def plan(self, *phases: Sequence[Job]) -> Iterator["Grid"]:
        """Load the finished runs of every phase (rank 0, sent to all), then open the bar over this rank's share."""
        keys = [self.key(job) for jobs in phases for job in jobs]
        if self.store is not None and self.rank == 0:
            self.store.open()
        found = self.store.finished(keys, self.on_disk) if self.store is not None and self.rank == 0 else {}
        self.done = broadcast_from_writer(found)
        if self.store is not None and self.rank != 0:
            self.store.open()
        if self.done:
            logger.info("resuming: %d of %d runs already finished in %s", len(self.done), len(keys),
                        self.store.directory)
        total = sum(len(self.share(jobs)) for jobs in phases)
        with contextlib.ExitStack() as stack:
            if self.progress:
                stack.enter_context(logging_redirect_tqdm([logging.getLogger("rqgmm")]))
                self.bar = stack.enter_context(tqdm(total=total, desc=self.desc, unit="run", dynamic_ncols=True))
            yield self
        self.bar = None

    def run(self, jobs: Sequence[Job], work: Callable[[Job], Result]) -> list[Result]:
        """Run this rank's pending share of ``jobs``, storing each result; every job's result, in job order."""
        new, by_key = {}, {self.key(job): job for job in jobs}
        for key, job in self.share(jobs).items():
            start = time.perf_counter()
            with alone():  # a whole job on this rank: a fit inside it must not shard over the group
                result = work(job)
            seconds = time.perf_counter() - start
            if self.store is not None:
                self.store.put(key, job, result, seconds=round(seconds, 3), rank=self.rank, **self.meta)
            new[key] = self._kept(key, job, result)
            release_free_memory()  # what the job made and dropped goes back to the system before the next
            self._log(job, result, seconds)
        for part in gather_everywhere(new):  # a kind kept on disk sends its file name, not its arrays
            for key, result in part.items():
                if (self.store is not None and self.rank == 0 and key not in new and not self.store.has(key)
                        and not isinstance(result.arrays, StoredArrays)):
                    self.store.put(key, by_key[key], result)  # another machine's run
                self.done[key] = self._kept(key, by_key[key], result)
        if self.on_disk and self.size > 1:
            self._pull_unseen(new, by_key)
        return [self.done[key] for key in by_key]

    def _kept(self, key: str, job: Job, result: Result) -> Result:
        """``result`` as this process keeps it: the arrays of a kind kept on disk left in their file."""
        if job.kind not in self.on_disk or not result.arrays or isinstance(result.arrays, StoredArrays):
            return result
        return replace(result, arrays=self.store.arrays(key, sorted(result.arrays)))

    def _pull_unseen(self, new: dict[str, Result], by_key: dict[str, Job]) -> None:
        """Rank 0 stores the runs kept on disk whose files it cannot see (another machine's), their arrays sent by
        their rank; on a shared file system nothing is sent."""
        unseen = [key for key, result in self.done.items() if isinstance(result.arrays, StoredArrays)
                  and not result.arrays.path.is_file()] if self.rank == 0 else None
        unseen = set(broadcast_from_writer(unseen))
        if not unseen:
            return
        mine = {key: replace(result, arrays={n: result.arrays[n] for n in result.arrays})
                for key, result in new.items() if key in unseen}
        for part in gather_everywhere(mine):
            for key, result in part.items():
                if self.rank == 0:
                    self.store.put(key, by_key[key], result)

    def _log(self, job: Job, result: Result, seconds: float) -> None:
        rate = f", {result.rows / seconds:,.0f} training rows/s" if result.rows and seconds > 0 else ""
        where = f"rank {self.rank}: " if self.size > 1 else ""
        logger.info("%s%s: %s (%.1f s%s)", where, job.label, result.summary, seconds, rate)
        if self.bar is not None:
            self.bar.update()

