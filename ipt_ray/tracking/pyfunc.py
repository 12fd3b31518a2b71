"""A bundle as an MLflow pyfunc model.

``mlflow.pyfunc.load_model(uri).predict(df)`` and ``mlflow models serve -m uri`` then work on
what ``ipt-ray export --register`` (or ``--format mlflow``) wrote:

- input: a DataFrame with a ``text`` column (and ``text_pair`` for a task of text pairs);
- output: a DataFrame with ``label`` (the predicted class name) and ``prob_<class>`` (its
  probability, float64) for every class, in logit order.

The model is MLflow's "models from code" form: a three-line script that builds
:class:`BundleModel`, ipt-ray's own code (``code/``) and the bundle (``artifacts/bundle``),
which :func:`ipt_ray.artifacts.bundle.load_bundle` loads and verifies. No pickle is written.
The backbone is a reference, as in the bundle: it loads from the hub, its cache or a local
folder, wherever the model is served.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import pandas as pd  # at run time: MLflow reads predict's type hints when the class is made
from mlflow.pyfunc import PythonModel

from ipt_ray.errors import UserError

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

    from ipt_ray.artifacts.bundle import LoadedBundle

#: Name of the bundle among the model's artifacts (``context.artifacts[BUNDLE_KEY]``).
BUNDLE_KEY = "bundle"
#: Input columns; ``TEXT_PAIR`` only for a task of text pairs.
TEXT, TEXT_PAIR = "text", "text_pair"
#: Output columns: the class name, then ``prob_<class>`` per class.
LABEL, PROB_PREFIX = "label", "prob_"
#: What a served model imports; pinned to the versions that wrote it.
REQUIREMENTS = ("torch", "transformers", "safetensors", "numpy", "pandas", "pyyaml")

_SCRIPT = """\
# Built by ipt-ray: the model is ipt_ray.tracking.pyfunc.BundleModel over artifacts/bundle.
import mlflow

from ipt_ray.tracking.pyfunc import BundleModel

mlflow.models.set_model(BundleModel())
"""


class BundleModel(PythonModel):
    """An ipt-ray bundle behind MLflow's pyfunc interface (see the module docstring)."""

    def load_context(self, context: Any) -> None:
        from ipt_ray.artifacts.bundle import load_bundle

        self.bundle: LoadedBundle = load_bundle(context.artifacts[BUNDLE_KEY])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Labels and class probabilities of ``model_input``'s rows.

        Raises:
            UserError: a missing ``text`` column, or ``text_pair`` missing for a pair bundle
                (given for a single-text one); texts that are not strings.
        """
        return predict_frame(self.bundle, model_input)


def predict_frame(bundle: LoadedBundle, model_input: Any) -> pd.DataFrame:
    """:meth:`BundleModel.predict` on a loaded bundle: (N rows) in, (N rows) out."""
    import torch

    frame = pd.DataFrame(model_input) if not isinstance(model_input, pd.DataFrame) else model_input
    pair = bool(bundle.config["is_pair"])
    wanted = [TEXT, TEXT_PAIR] if pair else [TEXT]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise UserError(
            f"the input lacks column {missing[0]!r}; this model takes columns "
            f"{', '.join(wanted)}, got {', '.join(map(str, frame.columns)) or 'none'}"
        )
    texts = frame[TEXT].tolist()
    pairs = frame[TEXT_PAIR].tolist() if pair else None
    logits = torch.from_numpy(bundle.logits(texts, pairs))
    probs = torch.softmax(logits.double(), dim=-1).numpy()
    names = bundle.label_names
    out = pd.DataFrame({LABEL: [names[i] for i in probs.argmax(axis=1)]})
    for j, name in enumerate(names):
        out[PROB_PREFIX + name] = probs[:, j]
    return out


def model_signature(config: dict[str, Any]) -> ModelSignature:
    """The signature of a bundle's model: its input columns and output columns."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    inputs: list[ColSpec | TensorSpec] = [ColSpec("string", TEXT)]
    if config["is_pair"]:
        inputs.append(ColSpec("string", TEXT_PAIR))
    outputs: list[ColSpec | TensorSpec] = [ColSpec("string", LABEL)]
    outputs += [ColSpec("double", PROB_PREFIX + name) for name in config["label_names"]]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def input_example(config: dict[str, Any]) -> pd.DataFrame:
    """Two rows of the input a model takes (MLflow shows them and checks serving with them)."""
    example = {TEXT: ["An example text.", "Another one, to show a batch."]}
    if config["is_pair"]:
        example[TEXT_PAIR] = ["Its pair.", "The second pair."]
    return pd.DataFrame(example)


def requirements() -> list[str]:
    """Pinned pip requirements of a served model (MLflow adds its own)."""
    return [f"{name}=={metadata.version(name)}" for name in REQUIREMENTS]


@contextmanager
def model_parts(bundle: Path) -> Iterator[dict[str, Any]]:
    """What ``mlflow.pyfunc.save_model`` / ``Model.log`` take for ``bundle``: the script,
    ipt-ray's code, the bundle, the signature, an input example, requirements."""
    from ipt_ray.artifacts.bundle import verify_bundle

    config = verify_bundle(bundle)
    work = Path(tempfile.mkdtemp(prefix="ipt-ray-pyfunc-"))
    try:
        script = work / "ipt_ray_model.py"
        script.write_text(_SCRIPT, encoding="utf-8")
        code = work / "ipt_ray"
        shutil.copytree(
            Path(__file__).resolve().parents[1], code, ignore=shutil.ignore_patterns("__pycache__")
        )
        yield {
            "python_model": str(script),
            "code_paths": [str(code)],
            "artifacts": {BUNDLE_KEY: str(bundle)},
            "signature": model_signature(config),
            "input_example": input_example(config),
            "pip_requirements": requirements(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def save_bundle_model(bundle: Path, out: Path) -> Path:
    """Write ``bundle`` as an MLflow model folder at ``out`` (new or empty); returns ``out``.

    Built beside ``out`` and renamed into place, so a failure leaves nothing behind.

    Raises:
        UserError: ``out`` is not new or empty; the bundle does not verify.
    """
    from ipt_ray.artifacts.bundle.format import staged_dir

    with staged_dir(out, "MLflow model") as tmp, model_parts(bundle) as parts:
        mlflow.pyfunc.save_model(path=str(tmp), **parts)
    return Path(out)


__all__ = [
    "BUNDLE_KEY",
    "LABEL",
    "PROB_PREFIX",
    "TEXT",
    "TEXT_PAIR",
    "BundleModel",
    "model_parts",
    "model_signature",
    "predict_frame",
    "save_bundle_model",
]
