"""The search as a Python call (ipt_ray.tuning.api): the settings are checked before anything
starts, errors name them as keyword arguments (the CLI words them as flags), and the summary's
to_dict() is the --json object. No Ray starts here."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ipt_ray.cluster.submit import job_command
from ipt_ray.errors import ConfigError, SettingError
from ipt_ray.tuning.api import prepare_search, search
from ipt_ray.tuning.options import SearchOptions
from ipt_ray.tuning.summary import SearchSummary, TrialSummary


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"resume": "a", "fresh": True}, "resume and fresh contradict each other"),
        ({"resume": "a", "name": "b"}, "resume a and name b name different searches"),
        ({"workers_per_trial": 0}, "workers_per_trial must be at least 1, got 0"),
        ({"max_failures": -2}, "max_failures must be -1 (no limit) or more, got -2"),
        ({"cpus_per_worker": -1.0}, "cpus_per_worker and gpus_per_worker cannot be negative"),
        ({"placement_timeout": 0.0}, "placement_timeout must be more than 0 seconds, got 0"),
        ({"runner": "actor", "workers_per_trial": 2}, "but workers_per_trial is 2"),
    ],
    ids=lambda v: v if isinstance(v, str) else ",".join(v),
)
def test_bad_settings_are_refused_by_their_keyword_names(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingError) as caught:
        prepare_search("smoke", SearchOptions(**options))
    assert message in str(caught.value)
    assert "--" not in str(caught.value)


def test_counts_below_one_are_refused() -> None:
    # (through prepare_search the space refuses num_samples 0 first, as an override)
    with pytest.raises(SettingError, match="num_samples must be at least 1, got 0"):
        SearchOptions(num_samples=0).check()


def test_the_cli_words_the_same_error_as_flags() -> None:
    with pytest.raises(SettingError) as caught:
        SearchOptions(runner="actor", worker_failures=1).check()
    flags = caught.value.render(lambda key: "--" + key.replace("_", "-"))
    assert flags.startswith("--worker-failures restarts Ray Train workers, which --runner actor")
    assert "use --max-failures" in flags


def test_set_overrides_fixed_settings_of_the_space() -> None:
    space = prepare_search("smoke", SearchOptions(set={"epochs": 1}, num_samples=3))
    assert space.fixed["epochs"] == 1
    assert space.settings.num_samples == 3
    # A parsed space takes the same overrides on top of its own.
    again = prepare_search(space, SearchOptions(set={"seed": 3}))
    assert again.fixed["epochs"] == 1 and again.fixed["seed"] == 3


def test_a_dashboard_address_is_for_job_submission() -> None:
    with pytest.raises(SettingError, match=r"address http://127\.0\.0\.1:8265 is a Ray dashboard"):
        search("smoke", address="http://127.0.0.1:8265")


def test_an_unknown_keyword_is_refused_with_the_closest_option() -> None:
    with pytest.raises(ConfigError, match=r"num_sample.*did you mean 'num_samples'"):
        search("smoke", num_sample=3)


# A value for every option, none of them its default (the job must carry each one).
EVERY_OPTION: dict[str, Any] = {
    "name": "s1",
    "address": "http://127.0.0.1:8265",
    "tracking_uri": "sqlite:////shared/runs/mlflow.db",
    "storage": "/shared/ray",
    "resume": "s1",
    "fresh": True,
    "num_samples": 7,
    "max_concurrent": 3,
    "workers_per_trial": 2,
    "cpus_per_worker": 1.5,
    "gpus_per_worker": 0.5,
    "max_failures": 2,
    "worker_failures": 1,
    "placement_timeout": 60.0,
    "stall_timeout": 90.0,
    "runner": "train",
    "pack_size": 3,  # not checked together with the runner here: only carried
    "pack_recompute": True,
    "set": {"epochs": 1, "encoder": "cnn", "lr": "1e-3", "label_names": ["a", "b"]},
}


def test_every_search_option_reaches_a_submitted_jobs_command_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    import ipt_ray.tuning.api
    from ipt_ray.cli.app import app

    assert set(EVERY_OPTION) == set(SearchOptions.names()), "give the new option a value above"
    command = job_command("space.yaml", SearchOptions(**EVERY_OPTION), as_json=True)
    assert command[:5] == ["python", "-m", "ipt_ray.cli", "search", "space.yaml"]
    assert command[-1] == "--json"
    # The job's command line, parsed by the command itself, gives back the same options (the
    # driver runs on the cluster: --address auto).
    received: dict[str, Any] = {}

    def capture(space: str, *, progress: Any = None, **options: Any) -> None:
        received.update(options, space=space)
        raise SystemExit(0)

    monkeypatch.setattr(ipt_ray.tuning.api, "search", capture)
    result = CliRunner().invoke(app, command[3:])
    assert result.exit_code == 0, result.output
    assert received.pop("space") == "space.yaml"
    assert received == {**EVERY_OPTION, "address": "auto"}


def _trial(trial_id: str, value: float | None) -> TrialSummary:
    return TrialSummary(
        trial_id=trial_id,
        run_id=f"run-{trial_id}",
        status="finished",
        value=value,
        best_epoch=1,
        epochs=1,
        params={"lr": 0.01},
        metrics={"val_accuracy": value or 0.0},
    )


def test_to_dict_is_the_json_object() -> None:
    best = _trial("a", 0.9)
    summary = SearchSummary(
        name="s",
        metric="val_accuracy",
        mode="max",
        tracking_uri="sqlite:///x/mlflow.db",
        experiment_id="1",
        parent_run_id="p",
        storage_path="/x/ray/s",
        num_trials=2,
        counts={"finished": 1, "killed": 1},
        best=best,
        top=[best],
        interrupted=False,
        seconds=3.0,
        trials=[best, _trial("b", None)],
    )
    out = json.loads(json.dumps(summary.to_dict()))
    assert out["experiment"] == "s" and out["parent_run_id"] == "p"
    assert out["best"] == {
        "run_id": "run-a",
        "trial_id": "a",
        "value": 0.9,
        "params": {"lr": 0.01},
        "metrics": {"val_accuracy": 0.9},
    }
    assert out["counts"] == {"trials": 2, "finished": 1, "pruned": 0, "failed": 0, "killed": 1}
    assert "trials" not in out  # every trial is in to_artifact() (search_summary.json)
    assert [t["trial_id"] for t in summary.to_artifact()["trials"]] == ["a", "b"]
