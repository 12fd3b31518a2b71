"""Screenshots of what MLflow's UI shows of an ipt-ray search, in a real browser.

Runs a small real search (a tiny random BERT and a toy task, so it takes about a minute on
2 cores), registers its best trial as a model, starts ``ipt-ray ui`` on the store, and takes
headless screenshots with Debian's chromium of: the experiment (runs table), the search's
parent run, its best trial's run, and the registered model's version. The PNGs go to
``--out`` (default ``docs/``).

    IPT_RAY_LOCK=/tmp/ipt-ray-ray.lock .venv/bin/python docs/screenshots.py [--out docs]

Needs ``apt-get install chromium``. One Ray at a time: with ``IPT_RAY_LOCK`` set, the search
waits for that lock file.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SPACE = """
name: ui-demo
fixed: {{task: {task}, model: {model}, epochs: 3, batch_size: 8, max_length: 16,
         max_samples: 200}}
search:
  metric: val_accuracy
  num_samples: 6
  max_concurrent: 2
  seed: 1
  scheduler: {{type: asha, grace_period: 1, reduction_factor: 2}}
params:
  lr: {{type: float, low: 1.0e-3, high: 1.0e-1, log: true}}
  prompt_length: [4, 8]
  generator:
    choices:
      task: {{}}
      idpg: {{}}
      ipt-encoder: {{}}
"""
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1600,1000",
    "--virtual-time-budget=20000",
]


def cli(*args: str, cwd: Path) -> str:
    command = [str(Path(sys.executable).with_name("ipt-ray")), *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def screenshot(url: str, out: Path, profile: Path) -> None:
    chromium = [
        "chromium",
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--screenshot={out}",
        url,
    ]
    subprocess.run(chromium, check=True, capture_output=True, timeout=120)
    print(f"{out}  <- {url}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--port", type=int, default=5077)
    args = parser.parse_args()
    from mlflow import MlflowClient

    from ipt_ray.testing import machine_lock, save_tiny_backbone, write_toy_csv

    out = args.out.resolve()
    with tempfile.TemporaryDirectory(prefix="ipt-ray-ui-") as tmp:
        root = Path(tmp)
        model = save_tiny_backbone("bert", root / "tiny-bert")
        task = write_toy_csv(root / "reviews.csv", n=400)
        space = root / "ui-demo.yaml"
        space.write_text(SPACE.format(task=task, model=model))
        with machine_lock():
            print(cli("search", str(space), cwd=root)[-1500:], flush=True)
        print(cli("export", "--out", "bundle", "--register", "ui-demo-prompts", cwd=root))
        uri = f"sqlite:///{root / 'ipt-ray-runs' / 'mlflow.db'}"
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name("ui-demo")
        runs = client.search_runs([experiment.experiment_id])
        parent = next(r for r in runs if r.data.tags.get("ipt_ray.kind") == "search")
        best = parent.data.tags["best_trial_run_id"]
        ui = subprocess.Popen(
            [str(Path(sys.executable).with_name("ipt-ray")), "ui", "--port", str(args.port)],
            cwd=root,
            env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{args.port}"
            deadline = time.time() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/health", timeout=2):
                        break
                except OSError:
                    if time.time() > deadline or ui.poll() is not None:
                        raise SystemExit("ipt-ray ui did not start") from None
                    time.sleep(0.5)
            exp = f"{base}/#/experiments/{experiment.experiment_id}"
            pages = {
                "ui-runs.png": f"{exp}/runs",
                "ui-search-run.png": f"{exp}/runs/{parent.info.run_id}",
                "ui-trial-run.png": f"{exp}/runs/{best}",
                "ui-model-version.png": f"{base}/#/models/ui-demo-prompts/versions/1",
            }
            out.mkdir(parents=True, exist_ok=True)
            for name, url in pages.items():
                screenshot(url, out / name, root / "chromium-profile")
        finally:
            os.killpg(ui.pid, signal.SIGTERM)
            ui.wait(timeout=30)


if __name__ == "__main__":
    main()
