"""``ipt-ray train``: one run in this process (:func:`ipt_ray.training.api.train`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ipt_ray.cli.format import format_epoch, parse_assignments, quiet_libraries, user_errors

if TYPE_CHECKING:
    from ipt_ray.training.loop import EpochResult, TrainingRun


def _print_start(run: TrainingRun) -> None:
    counts = run.param_counts()
    print(
        f"task {run.task.name} ({len(run.task.train)}/{len(run.task.validation)}/"
        f"{len(run.task.test)} examples, {run.task.num_labels} labels)  model "
        f"{run.config.model}  generator {run.config.generator}  trainable "
        f"{int(counts['trainable_params']):,} ({100 * counts['trainable_share']:.2f}% of "
        f"{int(counts['backbone_params']):,})",
        flush=True,
    )


def _print_epoch(result: EpochResult, run: TrainingRun) -> None:
    line = format_epoch(result.epoch, run.config.epochs, result.metrics, run.metric_name)
    print(line, flush=True)


@user_errors
def train(
    task: Annotated[
        str, typer.Option(help="task name (mr, bbc-news, glue/sst2, ...) or data file")
    ] = "mr",
    model: Annotated[
        str, typer.Option(help="backbone: hub id, local folder or alias 'minilm'")
    ] = "minilm",
    generator: Annotated[
        str, typer.Option(help="task, prefix, ipt-lookup, ipt-encoder, ipt-prefix, idpg or lpt")
    ] = "task",
    prompt_length: Annotated[int, typer.Option(help="prompt vectors P")] = 16,
    prompt_layer: Annotated[
        int,
        typer.Option(
            help="layer whose input the prompt joins: 0 = the embeddings, k > 0 = a late "
            "prompt after k frozen layers (their output is cached)"
        ),
    ] = 0,
    lr: Annotated[
        float | None, typer.Option(help="generator learning rate (default: the generator's)")
    ] = None,
    head_lr: Annotated[float | None, typer.Option(help="head learning rate (default 1e-2)")] = None,
    epochs: Annotated[int, typer.Option(help="training epochs")] = 3,
    batch_size: Annotated[int, typer.Option(help="examples per step")] = 32,
    max_length: Annotated[int, typer.Option(help="max tokens per instance")] = 64,
    seed: Annotated[int, typer.Option(help="seed of init, shuffling and splits")] = 0,
    max_samples: Annotated[int | None, typer.Option(help="cap every split (quick runs)")] = None,
    pooling: Annotated[str | None, typer.Option(help="first, mean or last")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    text_column: Annotated[str, typer.Option(help="data files: text column")] = "text",
    text_pair_column: Annotated[
        str, typer.Option(help="data files: 2nd text column")
    ] = "text_pair",
    label_column: Annotated[str, typer.Option(help="data files: label column")] = "label",
    labels: Annotated[
        str | None, typer.Option(help="data files: comma-separated label set, in id order")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", metavar="KEY=VALUE", help="a generator knob or training setting (repeat)"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="write the best checkpoint to this folder")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print a JSON summary as the last line")
    ] = False,
) -> None:
    """Train one generator on one task with a frozen backbone (one process, no Ray)."""
    quiet_libraries()
    from ipt_ray.training.api import train as run_training

    settings = {
        "task": task,
        "model": model,
        "generator": generator,
        "prompt_length": prompt_length,
        "prompt_layer": prompt_layer,
        "lr": lr,
        "head_lr": head_lr,
        "epochs": epochs,
        "batch_size": batch_size,
        "max_length": max_length,
        "seed": seed,
        "max_samples": max_samples,
        "pooling": pooling,
        "device": device,
        "text_column": text_column,
        "text_pair_column": text_pair_column,
        "label_column": label_column,
        "label_names": [x.strip() for x in labels.split(",")] if labels else None,
        **parse_assignments(set_ or []),
    }
    summary = run_training(settings, out=out, on_start=_print_start, on_epoch_end=_print_epoch)
    metrics, metric = summary.metrics, summary.run.metric_name
    print(
        f"best epoch {int(metrics['best_epoch'])}: val_{metric} {metrics['val_' + metric]:.4f}  "
        f"test_accuracy {metrics['test_accuracy']:.4f}  "
        f"test_f1_macro {metrics['test_f1_macro']:.4f}"
    )
    if summary.checkpoint is not None:
        print(f"checkpoint written to {summary.checkpoint}")
    if as_json:
        print(json.dumps(summary.to_dict()))
