"""``ipt-ray predict`` and ``ipt-ray prompts``: an exported bundle applied to texts
(:func:`ipt_ray.artifacts.predict.predict_file`, :func:`~ipt_ray.artifacts.predict.prompts_file`);
no Ray, no MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ipt_ray.cli.format import quiet_libraries, user_errors
from ipt_ray.errors import UserError

BundleArg = Annotated[Path, typer.Argument(help="an exported bundle folder (ipt-ray export)")]
InputOpt = Annotated[
    Path | None, typer.Option("--input", help="texts: .txt (one per line), .csv or .jsonl")
]
TextOpt = Annotated[list[str] | None, typer.Option("--text", help="a text (repeat)")]
TextColumnOpt = Annotated[str, typer.Option(help="text column of a .csv/.jsonl input")]
PairColumnOpt = Annotated[
    str | None, typer.Option(help="second-text column (default: text_pair if present)")
]
BackboneOpt = Annotated[
    str | None, typer.Option(help="load this backbone instead of the one the bundle names")
]
DeviceOpt = Annotated[str, typer.Option(help="cpu or cuda")]


def _text_source(
    input_: Path | None, text: list[str] | None
) -> tuple[Path | None, list[str] | None]:
    """``--input`` or ``--text``, exactly one of them."""
    if (input_ is None) == (not text):
        raise UserError("give either --input FILE or one or more --text TEXT")
    return input_, (list(text) if text else None)


def _column_flag(exc: Any) -> UserError:
    """A missing-column error worded with the flag the user passes (``--text-column``)."""
    return UserError(exc.naming(f"--{exc.setting.replace('_', '-')}"))


@user_errors
def predict(
    bundle: BundleArg,
    input_: InputOpt = None,
    text: TextOpt = None,
    output: Annotated[
        Path | None, typer.Option(help="write .csv or .jsonl (default: JSON lines on stdout)")
    ] = None,
    text_column: TextColumnOpt = "text",
    text_pair_column: PairColumnOpt = None,
    backbone: BackboneOpt = None,
    device: DeviceOpt = "cpu",
    batch_size: Annotated[int, typer.Option(help="texts per forward pass")] = 64,
) -> None:
    """Predict labels and probabilities for texts with an exported bundle (no Ray, no MLflow)."""
    quiet_libraries()
    from ipt_ray.artifacts.predict import predict_file
    from ipt_ray.artifacts.texts import ColumnNotFound

    input_path, texts = _text_source(input_, text)
    try:
        records = predict_file(
            bundle,
            input_path,
            output,
            texts=texts,
            text_column=text_column,
            text_pair_column=text_pair_column,
            batch_size=batch_size,
            backbone=backbone,
            device=device,
        )
    except ColumnNotFound as exc:
        raise _column_flag(exc) from None
    if output is None:
        for record in records:
            print(json.dumps(record))
        return
    print(f"{len(records)} predictions written to {output}")


@user_errors
def prompts(
    bundle: BundleArg,
    output: Annotated[Path, typer.Option(help=".npy (input prompts) or .safetensors (all)")],
    input_: InputOpt = None,
    text: TextOpt = None,
    text_column: TextColumnOpt = "text",
    text_pair_column: PairColumnOpt = None,
    backbone: BackboneOpt = None,
    device: DeviceOpt = "cpu",
    batch_size: Annotated[int, typer.Option(help="texts per forward pass")] = 64,
) -> None:
    """Write the instance-wise prompt vectors of texts (.npy or .safetensors)."""
    quiet_libraries()
    from ipt_ray.artifacts.predict import prompts_file
    from ipt_ray.artifacts.texts import ColumnNotFound

    input_path, texts = _text_source(input_, text)
    try:
        shapes = prompts_file(
            bundle,
            input_path,
            output,
            texts=texts,
            text_column=text_column,
            text_pair_column=text_pair_column,
            batch_size=batch_size,
            backbone=backbone,
            device=device,
        )
    except ColumnNotFound as exc:
        raise _column_flag(exc) from None
    count = next(iter(shapes.values()))[0]
    print(
        f"prompt vectors of {count} texts written to {output}: "
        + ", ".join(f"{k} {shape}" for k, shape in shapes.items())
    )
