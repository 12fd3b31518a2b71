"""Screenshots of what MLflow's UI shows of an ipt-ray search, in a real browser.

Runs a small real search (a tiny random BERT and a toy task, so it takes about a minute on
2 cores), registers its best trial as a model, starts ``ipt-ray ui`` on the store, and takes
headless screenshots with Debian's chromium (driven over its DevTools protocol) of: the
experiment as ``ipt-ray ui`` links it, the search's parent run (its description opened, with
the plots), its best trial's run, and the registered model's version. The
PNGs go to ``--out`` (default ``docs/``).

    IPT_RAY_LOCK=/tmp/ipt-ray-ray.lock .venv/bin/python docs/screenshots.py [--out docs]

Needs ``apt-get install chromium``. One Ray at a time: with ``IPT_RAY_LOCK`` set, the search
waits for that lock file.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
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
    "--window-size=1600,1300",
]


def cli(*args: str, cwd: Path) -> str:
    command = [str(Path(sys.executable).with_name("ipt-ray")), *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


class Browser:
    """Headless chromium driven over the DevTools protocol (aiohttp's websocket client): a
    page is captured after it has had ``settle`` seconds of real time, so that what MLflow's
    UI loads lazily (its image charts) is there."""

    def __init__(self, profile: Path, port: int = 9333) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            [
                "chromium",
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={port}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def _shot(self, url: str, out: Path, settle: float, click: str | None) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}/json/list") as r:
                        pages = [t for t in await r.json() if t["type"] == "page"]
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.2)
            async with session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids = iter(range(1, 1_000_000))

                async def call(method: str, **params: object) -> dict[str, object]:
                    msg_id = next(ids)
                    await ws.send_json({"id": msg_id, "method": method, "params": params})
                    while True:
                        message = await ws.receive_json()
                        if message.get("id") == msg_id:
                            return dict(message.get("result", {}))

                await call("Page.enable")
                await call("Page.navigate", url=url)
                await asyncio.sleep(settle)
                if click is not None:  # e.g. "Show more" of a collapsed description
                    script = (
                        "[...document.querySelectorAll('button, a, span')]"
                        f".find(e => e.textContent.trim() === {json.dumps(click)})?.click()"
                    )
                    await call("Runtime.evaluate", expression=script)
                    await asyncio.sleep(settle / 2)
                shot = await call("Page.captureScreenshot", format="png")
                out.write_bytes(base64.b64decode(str(shot["data"])))

    def screenshot(
        self, url: str, out: Path, settle: float = 8.0, click: str | None = None
    ) -> None:
        asyncio.run(self._shot(url, out, settle, click))
        print(f"{out}  <- {url}", flush=True)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--port", type=int, default=5077)
    args = parser.parse_args()
    from mlflow import MlflowClient

    from ipt_ray.testing import machine_lock, save_tiny_backbone, write_toy_csv
    from ipt_ray.tracking.store import experiment_page

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
            layout = "?workflowType=machine_learning"  # as the link ipt-ray ui prints
            run_page = f"{exp}/runs/{parent.info.run_id}"
            pages = {  # name: (URL, the text of what to click first)
                "ui-experiment.png": (f"{base}/{experiment_page(experiment.experiment_id)}", None),
                "ui-search-run.png": (f"{run_page}{layout}", "Show more"),
                "ui-trial-run.png": (f"{exp}/runs/{best}{layout}", None),
                "ui-model-version.png": (f"{base}/#/models/ui-demo-prompts/versions/1", None),
            }
            out.mkdir(parents=True, exist_ok=True)
            browser = Browser(root / "chromium-profile")
            try:
                for name, (url, click) in pages.items():
                    browser.screenshot(url, out / name, click=click)
            finally:
                browser.close()
        finally:
            os.killpg(ui.pid, signal.SIGTERM)
            ui.wait(timeout=30)


if __name__ == "__main__":
    main()
