"""The generations store: a directory of published IDs that only ever grows.

Layout of a store ``STORE/``::

    manifest.json                         what every generation is (the commit point)
    generations/gen-000003.parquet        item_id -> full ID, for every item ever published
    deltas/gen-000003.parquet             the items this generation added, retired or revived
    exports/gen-000003/                   lookup.parquet, trie.parquet, vocab.txt (:mod:`rqgmm.store.exports`)
    .lock                                 held (flock) by the one publisher at work

A generation file holds one row per item ever published, live or retired:
``item_id, c1..cL[, suffix], born, retired, fallback`` (``born``: the
generation that published it; ``retired``: the generation that retired it, 0
while live; ``fallback``: its prefix is not the one its model gave it, the
cap moved it). Its schema metadata is the codes table's (:mod:`rqgmm.ids.codes`),
so :func:`rqgmm.ids.codes.read_codes` reads it too.

``manifest.json`` records the store's method, levels, codebook sizes and
whether IDs carry a suffix, then per generation: its number, its parent, the
model's fingerprint, counts, the command line, the time, the cap, and the
SHA-256 and size of each of its files. The manifest carries a checksum of its
own content. Every file is written atomically before the manifest that names
it, and the manifest is replaced last: a publish killed at any moment leaves
the previous generation current, intact and readable. A file whose bytes do
not match the manifest, or a missing one, is refused (exit 2) naming the file
and what differs (:meth:`Store.verify`); a manifest of an older release that
records no checksum of some file gets one at the next publish.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rqgmm.files.atomic import atomic_output
from rqgmm.ids.codes import CodesTable, code_columns
from rqgmm.errors import InputError
from rqgmm.files.formats import item_id_column, read_parquet
from rqgmm.store.exports import FILES as EXPORT_FILES

MANIFEST = "manifest.json"
LOCK = ".lock"
FORMAT = "rqgmm-store"
VERSION = 1
HASH_BLOCK = 1 << 24


GEN_PREFIX = "gen-"  # a generation's files are named gen-000003(.parquet): the prefix, six digits


def _name(generation: int) -> str:
    return f"{GEN_PREFIX}{generation:06d}"


def generation_file(generation: int) -> str:
    return f"generations/{_name(generation)}.parquet"


def delta_file(generation: int) -> str:
    return f"deltas/{_name(generation)}.parquet"


def export_dir(generation: int) -> str:
    return f"exports/{_name(generation)}"


def generation_of(path: str | os.PathLike) -> int | None:
    """The generation number in a generation file's name (``gen-000003.parquet`` -> 3), else None."""
    digits = Path(path).stem.removeprefix(GEN_PREFIX)
    return int(digits) if Path(path).stem.startswith(GEN_PREFIX) and digits.isdigit() else None


# ---------------------------------------------------------------------- a generation


@dataclass
class Generation:
    """Every item a generation knows, live or retired, row for row.

    item_ids : (N,) int or str
    codes : (N, L) int64, the prefix of each full ID
    suffix : (N,) int64, or None for a store without suffixes
    born, retired : (N,) int64: the generation that published / retired it (0: live)
    fallback : (N,) bool: the cap moved it off its model's prefix
    """

    item_ids: np.ndarray
    codes: np.ndarray
    suffix: np.ndarray | None
    born: np.ndarray
    retired: np.ndarray
    fallback: np.ndarray

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def live(self) -> np.ndarray:
        return self.retired == 0

    def full_ids(self) -> np.ndarray:
        """Full IDs (N, T): the codes, then the suffix when there is one."""
        return self.codes if self.suffix is None else np.column_stack([self.codes, self.suffix])

    def select(self, rows: np.ndarray) -> "Generation":
        return Generation(self.item_ids[rows], self.codes[rows], None if self.suffix is None else self.suffix[rows],
                          self.born[rows], self.retired[rows], self.fallback[rows])

    @staticmethod
    def concat(parts: list["Generation"]) -> "Generation":
        suffix = None if parts[0].suffix is None else np.concatenate([p.suffix for p in parts])
        return Generation(np.concatenate([p.item_ids for p in parts]), np.concatenate([p.codes for p in parts]),
                          suffix, *(np.concatenate([getattr(p, a) for p in parts])
                                    for a in ("born", "retired", "fallback")))

    @staticmethod
    def empty(levels: int, suffix: bool, id_dtype=np.int64) -> "Generation":
        none = np.zeros(0, dtype=np.int64)
        return Generation(np.zeros(0, dtype=id_dtype), np.zeros((0, levels), dtype=np.int64),
                          none if suffix else None, none, none, np.zeros(0, dtype=bool))


def write_generation(path: Path, gen: Generation, meta: dict, extra: dict | None = None) -> None:
    """Write a generation (or delta) table atomically, with the codes metadata ``meta`` and extra columns."""
    columns = {"item_id": gen.item_ids, **{c: gen.codes[:, i] for i, c in enumerate(code_columns(gen.codes.shape[1]))}}
    if gen.suffix is not None:
        columns["suffix"] = gen.suffix
    columns.update(born=gen.born, retired=gen.retired, fallback=gen.fallback, **(extra or {}))
    table = pa.table(columns).replace_schema_metadata({b"rqgmm": json.dumps(meta).encode()})
    with atomic_output(path) as tmp:
        pq.write_table(table, tmp)


def read_generation(path: Path, levels: int, suffix: bool) -> Generation:
    """Read a generation file (checked against the manifest by the caller); InputError naming it if malformed."""
    table = read_parquet(path, "a store generation")
    names = ["item_id", *code_columns(levels), *(["suffix"] if suffix else []), "born", "retired", "fallback"]
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise InputError(f"{path} lacks column(s) {missing}; it is not a generation of this store")
    ints = {n: table.column(n).to_numpy().astype(np.int64) for n in names[1:-1]}
    return Generation(item_id_column(table.column("item_id"), path, unique=False),  # checked when it was written
                      np.column_stack([ints[c] for c in code_columns(levels)]) if levels else np.zeros((len(table), 0)),
                      ints.get("suffix"), ints["born"], ints["retired"],
                      table.column("fallback").to_numpy(zero_copy_only=False).astype(bool))


def codes_metadata(settings: dict, gen: Generation, fingerprint: str) -> dict:
    """The codes table's schema metadata for a generation's rows (``settings``: the store's method and sizes)."""
    table = CodesTable(gen.codes, None, settings["codebook_sizes"], settings["method"], gen.suffix, fingerprint)
    return table.metadata("codes")


# ------------------------------------------------------------------------ the store


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _manifest_checksum(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class Store:
    """An opened store: its path and its checked manifest (``None`` for a new, empty store)."""

    path: Path
    manifest: dict | None

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Store":
        """Open the store at ``path``; a missing or empty directory is a new store."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise InputError(f"--store {path} is a file; pass a store directory")
        manifest_path = path / MANIFEST
        if not manifest_path.exists():
            others = [p.name for p in path.iterdir() if p.name != LOCK] if path.is_dir() else []
            if others:
                raise InputError(f"{path} holds files but no {MANIFEST}: not an rqgmm store (or its manifest was "
                                 "deleted); pass a new directory or restore the manifest")
            return cls(path, None)
        return cls(path, _read_manifest(manifest_path))

    @property
    def is_new(self) -> bool:
        return self.manifest is None

    @property
    def method(self) -> str:
        return self.manifest["method"]

    @property
    def levels(self) -> int:
        return self.manifest["levels"]

    @property
    def codebook_sizes(self) -> list[int]:
        return self.manifest["codebook_sizes"]

    @property
    def has_suffix(self) -> bool:
        return self.manifest["suffix"]

    @property
    def generations(self) -> list[dict]:
        return [] if self.manifest is None else self.manifest["generations"]

    @property
    def current(self) -> dict | None:
        return self.generations[-1] if self.generations else None

    def entry(self, generation: int | None = None) -> dict:
        """The manifest entry of ``generation`` (default: the current one)."""
        if not self.generations:
            raise InputError(f"{self.path} holds no generation yet; publish one with `rqgmm publish`")
        if generation is None:
            return self.current
        for entry in self.generations:
            if entry["generation"] == generation:
                return entry
        raise InputError(f"{self.path} has generations 1..{self.current['generation']}, not {generation}")

    def file(self, entry: dict, name: str) -> Path:
        """The path of one of ``entry``'s files, after checking it against the manifest's size and checksum.

        A file the generation always has (:func:`generation_files`) that an older
        release's manifest records no checksum of is only checked to exist.
        """
        path = self.path / name
        record = entry["files"].get(name)
        if record is None and name not in generation_files(entry["generation"]):
            raise InputError(f"{self.path / MANIFEST} lists no file {name} for generation {entry['generation']}")
        problem = file_problem(path, record)
        if problem is not None:
            raise InputError(f"{path} {problem} (generation {entry['generation']} names it); restore it from a backup")
        return path

    def verify(self, entries: list[dict] | None = None) -> dict:
        """Check every file of ``entries`` (default: every generation) against the manifest; InputError naming the
        first that differs. Returns ``{"verified": files whose checksum matched, "unrecorded": files an older
        release recorded no checksum of (checked to exist; the next publish records them)}``."""
        verified, unrecorded = [], []
        for entry in self.generations if entries is None else entries:
            names = dict.fromkeys([*generation_files(entry["generation"]), *entry["files"]])
            for name in names:
                self.file(entry, name)
                (verified if name in entry["files"] else unrecorded).append(name)
        return {"verified": verified, "unrecorded": unrecorded}

    def read(self, generation: int | None = None) -> Generation:
        """The generation's table, checked against the manifest."""
        entry = self.entry(generation)
        return read_generation(self.file(entry, generation_file(entry["generation"])), self.levels, self.has_suffix)

    def commit(self, settings: dict, entry: dict) -> None:
        """Append ``entry`` (its files already written) and replace the manifest atomically: the commit point."""
        entry = {**entry, "files": {name: _record(self.path / name) for name in entry["files"]}}
        generations = [_recorded(self.path, old) for old in self.generations]
        manifest = {"format": FORMAT, "version": VERSION, **settings, "generations": [*generations, entry]}
        manifest["checksum"] = _manifest_checksum(manifest)
        with atomic_output(self.path / MANIFEST) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1) + "\n")
        self.manifest = manifest


def generation_files(generation: int) -> list[str]:
    """The files every generation has: its table, its delta and its exports."""
    return [generation_file(generation), delta_file(generation),
            *(f"{export_dir(generation)}/{name}" for name in EXPORT_FILES)]


def file_problem(path: Path, record: dict | None) -> str | None:
    """What differs between the file at ``path`` and its manifest ``record`` (None: only its presence), or None."""
    if not path.is_file():
        return "is missing from the store"
    if record is None:
        return None
    size = path.stat().st_size
    if size != record["bytes"]:
        return f"does not match its checksum in {MANIFEST}: it holds {size} bytes, the manifest records {record['bytes']}"
    digest = sha256(path)
    if digest != record["sha256"]:
        return (f"does not match its checksum in {MANIFEST}: its SHA-256 is {digest[:12]}..., the manifest records "
                f"{record['sha256'][:12]}... (same size: edited in place)")
    return None


def _record(path: Path) -> dict:
    return {"sha256": sha256(path), "bytes": path.stat().st_size}


def _recorded(root: Path, entry: dict) -> dict:
    """``entry`` with a checksum for each of its generation's files an older release did not record (checked present
    by the publish that adds them, so a store of the previous release reaches full coverage at its next publish)."""
    missing = [n for n in generation_files(entry["generation"]) if n not in entry["files"] and (root / n).is_file()]
    if not missing:
        return entry
    return {**entry, "files": {**entry["files"], **{name: _record(root / name) for name in missing}}}


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is damaged (not valid JSON: {exc}); restore it from a backup") from None
    problem = _manifest_problem(manifest)
    if problem:
        raise InputError(f"{path} is damaged ({problem}); restore it from a backup")
    if manifest["version"] > VERSION:
        raise InputError(f"{path} has store version {manifest['version']}, newer than this release reads; "
                         "upgrade rqgmm")
    return manifest


def _manifest_problem(manifest) -> str | None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return f"no '{FORMAT}' format"
    for key, kind in (("version", int), ("method", str), ("levels", int), ("codebook_sizes", list),
                      ("suffix", bool), ("generations", list), ("checksum", str)):
        if not isinstance(manifest.get(key), kind):
            return f"'{key}' missing or not a {kind.__name__}"
    if manifest["checksum"] != _manifest_checksum(manifest):
        return "its content does not match its checksum: it was edited by hand"
    for i, entry in enumerate(manifest["generations"]):
        if not isinstance(entry, dict) or entry.get("generation") != i + 1 or not isinstance(entry.get("files"), dict):
            return f"generation entry {i + 1} is malformed"
    return None


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def locked(path: str | os.PathLike) -> Iterator[None]:
    """Hold the store's lock (an exclusive flock on ``STORE/.lock``) or refuse: one publisher at a time.

    The kernel releases the lock when the process dies, even by SIGKILL. A store
    directory this call created is removed again if the work fails (only by the
    call whose ``mkdir`` made it: the loser of a race to create it removes
    nothing), and a lock file it made in an existing folder without a manifest
    is removed too, so a refused first publish leaves the folder as it was; parent folders it created go too.
    """
    path = Path(path)
    missing = [folder for folder in reversed(path.absolute().parents) if not folder.exists()]  # outermost first
    try:
        path.mkdir(parents=True)
        created = True
    except FileExistsError:
        created = False
    lock_made = not (path / LOCK).exists()
    handle = open(path / LOCK, "a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_made = False  # another publisher's lock: never ours to remove
            raise InputError(f"another publish holds the lock {path / LOCK}; wait for it to finish, "
                             "then publish again") from None
        yield
    except BaseException:
        if created:
            shutil.rmtree(path, ignore_errors=True)
            _remove_empty(missing)
        elif lock_made and not (path / MANIFEST).exists():
            (path / LOCK).unlink(missing_ok=True)
        raise
    finally:
        handle.close()


def _remove_empty(folders: list[Path]) -> None:
    """Remove the parent folders a refused first publish created, innermost first, while they are empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:  # another process put something there: keep it
            return


TEMPORARY_FOLDERS = (".", "generations", "deltas", "exports")


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove what a killed publish left (``.NAME.tmp-*``, ``.NAME.old-*``) in the store's folders; call under
    the lock, when no other publisher can be writing. Returns the paths removed."""
    stale = [p for folder in TEMPORARY_FOLDERS if (path / folder).is_dir() for p in (path / folder).iterdir()
             if p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name)]
    for p in stale:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale
