"""Tiny random backbones, a word-level tokenizer and toy data for tests and benchmarks.

Shipped in the package (like ``optuna.testing``) so that tests, benchmarks and users' own
tests build the same fixtures. Nothing here touches the network.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    AutoConfig,
    AutoModel,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

ARCHITECTURES = ("bert", "roberta", "distilbert", "electra", "deberta-v2", "gpt2", "llama")

_POSITIVE = [
    "good",
    "great",
    "fine",
    "superb",
    "lovely",
    "moving",
    "brilliant",
    "charming",
    "fun",
    "warm",
]
_NEGATIVE = ["bad", "awful", "dull", "boring", "weak", "messy", "tedious", "bland", "poor", "flat"]
_FILLER = [
    "the",
    "a",
    "movie",
    "film",
    "plot",
    "story",
    "cast",
    "it",
    "is",
    "was",
    "and",
    "but",
    "very",
    "quite",
    "really",
]
TOY_WORDS = sorted(set(_POSITIVE + _NEGATIVE + _FILLER))
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB_SIZE = 99  # as in transformers' model testers: room beyond the toy words


def tiny_tokenizer(token_types: bool = True) -> PreTrainedTokenizerFast:
    """A BERT-style word-level tokenizer over the toy vocabulary ([CLS] text [SEP] text [SEP]).

    ``token_types=False`` makes it return no ``token_type_ids``, like GPT-2's and Llama's.
    """
    vocab = {tok: i for i, tok in enumerate(SPECIALS + TOY_WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        bos_token="[CLS]",
        eos_token="[SEP]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"]
        if token_types
        else ["input_ids", "attention_mask"],
    )


def tiny_config_kwargs(arch: str) -> dict[str, object]:
    """Config values for a random model with hidden 32, 2 layers, 2 heads, 64 positions."""
    common: dict[str, object] = {"vocab_size": VOCAB_SIZE, "pad_token_id": 0}
    if arch == "distilbert":
        return {
            **common,
            "dim": 32,
            "n_layers": 2,
            "n_heads": 2,
            "hidden_dim": 64,
            "max_position_embeddings": 64,
        }
    if arch == "gpt2":
        return {
            **common,
            "n_embd": 32,
            "n_layer": 2,
            "n_head": 2,
            "n_positions": 64,
            "bos_token_id": 2,
            "eos_token_id": 3,
        }
    if arch == "llama":
        return {
            **common,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 64,
            "bos_token_id": 2,
            "eos_token_id": 3,
        }
    base = {
        **common,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
    }
    if arch == "roberta":
        base["max_position_embeddings"] = 65  # RoBERTa reserves padding_idx + 1 = 1 position
    if arch == "electra":
        base["embedding_size"] = 32
    return base


def tiny_backbone(arch: str, seed: int = 0) -> PreTrainedModel:
    """A randomly initialised base model of ``arch`` (one of :data:`ARCHITECTURES`)."""
    import torch

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; allowed: {', '.join(ARCHITECTURES)}")
    torch.manual_seed(seed)
    config = AutoConfig.for_model(arch, **tiny_config_kwargs(arch))
    return AutoModel.from_config(config)


def save_tiny_backbone(arch: str, directory: str | Path, seed: int = 0) -> Path:
    """Write a tiny model and tokenizer to ``directory`` (a local model id); return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tiny_backbone(arch, seed).save_pretrained(directory)
    tokenizer = tiny_tokenizer(token_types=arch not in ("gpt2", "llama"))
    tokenizer.save_pretrained(directory)
    return directory


def toy_sentences(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """``n`` short sentences with a learnable sentiment label (1 positive, 0 negative)."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        cue = rng.choice(_POSITIVE if label else _NEGATIVE)
        words = [rng.choice(_FILLER) for _ in range(rng.randint(2, 8))]
        words.insert(rng.randint(0, len(words)), cue)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def write_toy_csv(path: str | Path, n: int = 120, seed: int = 0, pair: bool = False) -> Path:
    """A CSV task file (columns text[, text_pair], label with names negative/positive)."""
    import csv

    path = Path(path)
    texts, labels = toy_sentences(n, seed)
    pairs, _ = toy_sentences(n, seed + 1)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "text_pair", "label"] if pair else ["text", "label"])
        for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
            name = "positive" if label else "negative"
            writer.writerow([text, pairs[i], name] if pair else [text, name])
    return path


def tiny_space_text(model: Path, task: Path, search: str, params: str, **fixed: object) -> str:
    """A search-space YAML over a tiny backbone and a toy task: 48 samples, max length 16,
    batch 16, 2 epochs unless ``fixed`` says otherwise; ``search`` and ``params`` are the
    YAML bodies of those sections."""
    import json

    values: dict[str, object] = {
        "task": str(task),
        "model": str(model),
        "max_samples": 48,
        "max_length": 16,
        "batch_size": 16,
        "epochs": 2,
        **fixed,
    }
    return (
        "fixed:\n"
        + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in values.items())
        + "search:\n"
        + "".join(f"  {line}\n" for line in search.strip().splitlines())
        + "params:\n"
        + "".join(f"  {line}\n" for line in params.strip().splitlines())
    )


def search_runs(tracking_uri: str, summary: Any) -> tuple[Any, list[Any]]:
    """(parent run, child runs) in MLflow of a finished search's :class:`SearchSummary`."""
    from mlflow import MlflowClient

    from ipt_ray import constants as C

    runs = list(MlflowClient(tracking_uri=tracking_uri).search_runs([summary.experiment_id]))
    parent = [r for r in runs if r.info.run_id == summary.parent_run_id]
    children = [r for r in runs if r.data.tags.get(C.TAG_PARENT_RUN) == summary.parent_run_id]
    if len(parent) != 1:
        raise AssertionError(f"{len(parent)} parent runs {summary.parent_run_id} in MLflow")
    return parent[0], children


def metric_steps(tracking_uri: str, run_id: str, key: str) -> list[int]:
    """The steps (epochs) at which ``key`` was logged to the run, in logging order."""
    from mlflow import MlflowClient

    history = MlflowClient(tracking_uri=tracking_uri).get_metric_history(run_id, key)
    return [m.step for m in history]


def alive_actor_pids(class_name: str) -> list[int]:
    """PIDs of the live Ray actors whose class name contains ``class_name`` (needs the Ray
    dashboard's state API: ``ray[default]``). Tune's trial actors are ``ImplicitFunc``, Ray
    Train's workers ``RayTrainWorker``."""
    import ray
    from ray.util.state import list_actors

    # This process's Ray, also when another Ray runs on the machine ("auto" finds both).
    address = ray.get_runtime_context().gcs_address if ray.is_initialized() else None
    actors = list_actors(address=address, filters=[("state", "=", "ALIVE")], detail=True)
    return [int(a.pid) for a in actors if a.pid is not None and class_name in (a.class_name or "")]


class FlakyMlflowClient:
    """An MlflowClient (or anything with its methods) that can be switched off: while
    ``error`` is set every call raises it before reaching the store, and methods named in
    ``failing`` raise a dropped connection; ``calls`` lists, in order, the calls that got
    through. Tests of the tracker's outage handling use it."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.error: BaseException | None = None
        self.failing: set[str] = set()
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.error is not None:
                raise self.error
            if name in self.failing:
                raise ConnectionError("Connection reset by peer")
            self.calls.append(name)
            return method(*args, **kwargs)

        return call


def run_cli(
    *args: str | Path,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``ipt-ray ARGS`` as a user runs it: a new process (in ``cwd``), offline
    (``HF_HUB_OFFLINE=1``), with ``env`` added to this process's environment; text output
    captured.

    Raises:
        subprocess.TimeoutExpired: it ran longer than ``timeout`` seconds.
    """
    return subprocess.run(
        [sys.executable, "-m", "ipt_ray.cli", *map(str, args)],
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ray_evidence(cluster: Any) -> dict[str, str]:
    """What a hung search's cluster looks like, for the failure report: ``ray status`` and
    the state API's placement groups and actors (each actor with its placement group), as
    ``ray`` prints them. ``cluster`` is a :class:`ipt_ray.cluster.LocalCluster`."""
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    kw: dict[str, Any] = {"env": cluster.client_env(), "capture_output": True, "text": True}
    commands = {
        "ray_status": ["status", "--address", cluster.head_address],
        "placement_groups": ["list", "placement-groups", "--format=json", "--detail"],
        "actors": ["list", "actors", "--format=json", "--detail", "--limit", "1000"],
    }
    runs = {key: [*ray, *args] for key, args in commands.items()}
    # The GCS table: each group's creator actor, and whether Ray thinks it dead (what the
    # watchdog reaps by), beside what the actor table says of that actor.
    runs["gcs_placement_groups"] = [
        sys.executable,
        "-c",
        _GCS_GROUPS_SCRIPT,
        cluster.head_address,
    ]
    evidence = {}
    for key, args in runs.items():
        try:
            done = subprocess.run(args, timeout=60, **kw)
            evidence[key] = done.stdout + done.stderr[-2000:]
        except subprocess.TimeoutExpired:
            evidence[key] = "(no answer in 60 s)"
    return evidence


_GCS_GROUPS_SCRIPT = """
import dataclasses, json, sys
import ray
from ray._private.state import state
from ipt_ray.tuning.watchdog import placement_groups
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
out = []
for group in placement_groups() or []:
    row = dataclasses.asdict(group)
    if group.live and group.creator_actor_id:
        info = state.actor_table(group.creator_actor_id) or {}
        row["creator"] = {k: info.get(k) for k in ("ActorClassName", "State", "Pid", "EndTime")}
    out.append(row)
print(json.dumps(out))
"""


def evidence_text(evidence: dict[str, str], limit: int = 60) -> str:
    """:func:`ray_evidence` in a few lines for a failure message: ``ray status``, then each
    placement group not REMOVED and each actor not DEAD (at most ``limit`` of each)."""
    out = [evidence.get("ray_status", "").strip()]
    tables = {
        "placement_groups": ("placement_group_id", "state", "creator_job_id", "bundles"),
        "actors": ("class_name", "state", "pid", "node_id", "placement_group_id"),
        "gcs_placement_groups": ("id", "state", "bundles", "creator_actor_dead", "creator"),
    }
    for key, fields in tables.items():
        try:
            rows = json.loads(evidence.get(key) or "[]")
        except json.JSONDecodeError:
            out.append(f"{key}: {evidence.get(key, '')[:2000]}")
            continue
        live = [r for r in rows if r.get("state") not in ("REMOVED", "DEAD")]
        out.append(f"{key}: {len(live)} of {len(rows)} not removed/dead")
        out += ["  " + " ".join(f"{f}={r.get(f)}" for f in fields) for r in live[:limit]]
    return "\n".join(out)


def stalled_worker(config: dict[str, Any]) -> None:
    """A Ray Train per-worker function that never reports (a hung collective, say): what the
    search watchdog must notice. Sleeps for an hour, in short naps so a kill lands at once."""
    import time

    for _ in range(36_000):
        time.sleep(0.1)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 with its store and artifacts under ``root``.

    :meth:`start` and :meth:`stop` may be called again (the same port and store: a restart,
    as in an outage). Job execution is off (it would start extra processes).
    """

    def __init__(self, root: str | Path, *, port: int | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.root / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> str:
        """Start the server and wait until ``/health`` answers; returns its URL.

        Raises:
            RuntimeError: it exited or did not answer within ``timeout`` seconds.
        """
        import os
        import sys
        import time
        import urllib.request

        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        mlflow = Path(sys.executable).with_name("mlflow")
        with self.log_path.open("a") as log:
            self._process = subprocess.Popen(
                [
                    str(mlflow),
                    "server",
                    "--backend-store-uri",
                    f"sqlite:///{self.root / 'server.db'}",
                    "--artifacts-destination",
                    str(self.root / "server-artifacts"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return self.url
            except OSError:
                pass
            if self._process is None or self._process.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(
                    "mlflow server did not start: " + self.log_path.read_text()[-2000:]
                )
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop the server (its whole process group), killing it if it does not stop."""
        import os
        import signal

        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, None)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


@contextlib.contextmanager
def mlflow_server(root: str | Path, *, timeout: float = 120.0) -> Iterator[str]:
    """A started :class:`MlflowServer` for the block; yields its URL. It is stopped when the
    block ends, also on failure."""
    server = MlflowServer(root)
    try:
        yield server.start(timeout)
    finally:
        server.stop()
