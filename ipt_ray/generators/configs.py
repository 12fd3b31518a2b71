"""Every generator's knobs as a config dataclass, importable without torch.

As PEFT keeps ``config.py`` apart from ``model.py``, the knobs live here and each generator's
torch module (:mod:`~ipt_ray.generators.task`, ...) imports its config from here. Loading a
search space validates knobs against these classes without importing torch.

The base class and how a knob is declared and checked are in
:mod:`~ipt_ray.generators.knobs`. Each config class registers its generator
(:func:`~ipt_ray.generators.registry.register`): its public ``name``, the ``module:Class`` of
the torch module (imported on first build) and the learning rate a run uses when it sets
none.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ipt_ray.errors import ConfigError
from ipt_ray.generators.knobs import GeneratorConfig, check_range, help_field
from ipt_ray.generators.registry import register


class PromptInit(str, enum.Enum):
    """How a static prompt starts."""

    VOCAB = "vocab"  # rows of the frozen vocabulary embeddings, drawn at random
    RANDOM = "random"  # N(0, init_std^2)


@register
@dataclass
class TaskPromptConfig(GeneratorConfig):
    name = "task"
    generator_class = "ipt_ray.generators.task:TaskPrompt"
    default_lr = 3e-2

    init: PromptInit = help_field(
        PromptInit.VOCAB, "vocab: copy random rows of the vocabulary embeddings; random: normal"
    )
    init_std: float = help_field(0.02, "standard deviation of the random initialisation")


# -- prefix --------------------------------------------------------------------------------


@register
@dataclass
class PrefixConfig(GeneratorConfig):
    name = "prefix"
    generator_class = "ipt_ray.generators.prefix:PrefixTuning"
    default_lr = 1e-2

    reparam: bool = help_field(
        False,
        "produce the prefix through an MLP from P embeddings (prefix tuning); the MLP "
        "can be folded away after training",
    )
    reparam_hidden: int = help_field(512, "width M of the reparameterisation MLP")
    init_std: float = help_field(0.02, "standard deviation of the initial prefix")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("reparam_hidden", self.reparam_hidden, 1, 65536, integer=True)


# -- ipt-lookup ----------------------------------------------------------------------------


class LookupMode(str, enum.Enum):
    INPUT = "input"  # the instance prompt alone
    HYBRID = "hybrid"  # static task prompt + scale * instance prompt


@register
@dataclass
class LookupConfig(GeneratorConfig):
    name = "ipt-lookup"
    generator_class = "ipt_ray.generators.lookup:LookupPrompt"
    default_lr = 1e-2

    mode: LookupMode = help_field(
        LookupMode.INPUT,
        "input: instance prompt only; hybrid: static task prompt plus the scaled instance prompt",
    )
    rank: int = help_field(
        0,
        "0: a full V x H table initialised from the vocabulary "
        "embeddings; r > 0: a V x r table times an r x H projection",
    )
    scale: float = help_field(1.0, "hybrid mode: weight of the instance part")
    static_lr_scale: float = help_field(
        1.0, "hybrid mode: learning-rate multiplier of the static prompt"
    )
    init_std: float = help_field(0.02, "standard deviation of random initialisations")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("rank", self.rank, 0, 65536, integer=True)
        check_range("scale", self.scale, 0.0, 1e3)
        check_range("static_lr_scale", self.static_lr_scale, 1e-3, 1e4)


# -- ipt-encoder ---------------------------------------------------------------------------


class EncoderKind(str, enum.Enum):
    CNN = "cnn"
    LSTM = "lstm"
    MLP = "mlp"


class Readout(str, enum.Enum):
    """How ``ipt-encoder``'s encoder states become P prompt vectors."""

    TOKENS = "tokens"  # the first P positions, each projected to H
    POOLED = "pooled"  # one vector pooled over the text, projected to P * H (IPT's encoders)


class TokenSource(str, enum.Enum):
    EMBEDDINGS = "embeddings"  # the backbone's frozen input embeddings
    LOOKUP = "lookup"  # a trainable V x H table, initialised from them


@register
@dataclass
class EncoderConfig(GeneratorConfig):
    name = "ipt-encoder"
    generator_class = "ipt_ray.generators.encoder:EncoderPrompt"

    encoder: EncoderKind = help_field(EncoderKind.LSTM, "the encoder: cnn, lstm or mlp")
    source: TokenSource = help_field(
        TokenSource.EMBEDDINGS, "token vectors fed to the encoder: embeddings (frozen) or lookup"
    )
    hidden: int = help_field(128, "encoder width h (per direction for lstm)")
    kernel_size: int = help_field(3, "cnn: window in tokens (odd)")
    num_kernels: int = help_field(
        1,
        "cnn: n convolutions of width h, windows kernel_size, kernel_size + 1, ..., their "
        "outputs side by side (IPT's TextCNN: kernel_size 3, num_kernels 3)",
    )
    lstm_layers: int = help_field(1, "lstm: stacked bidirectional layers (IPT's: 2)")
    readout: Readout = help_field(
        Readout.TOKENS,
        "tokens: the encoder's first P outputs, each projected to H; pooled: its outputs "
        "pooled over the text (cnn max, lstm mean; mlp encodes the mean input), projected to "
        "P * H, as IPT's sentence encoders",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("hidden", self.hidden, 1, 65536, integer=True)
        check_range("kernel_size", self.kernel_size, 1, 63, integer=True)
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd, got {self.kernel_size}")
        check_range("num_kernels", self.num_kernels, 1, 8, integer=True)
        check_range("lstm_layers", self.lstm_layers, 1, 8, integer=True)

    @property
    def kernel_sizes(self) -> list[int]:
        """cnn: the windows of the convolutions, in tokens."""
        return [self.kernel_size + i for i in range(self.num_kernels)]


# -- idpg ----------------------------------------------------------------------------------


class Weights(str, enum.Enum):
    DNN = "dnn"  # dense matrices
    PHM = "phm"  # parameterised hypercomplex multiplication


class Placement(str, enum.Enum):
    INPUT = "input"
    LAYERS = "layers"


class Activation(str, enum.Enum):
    TANH = "tanh"
    RELU = "relu"
    GELU = "gelu"


@register
@dataclass
class IDPGConfig(GeneratorConfig):
    name = "idpg"
    generator_class = "ipt_ray.generators.idpg:IDPGPrompt"

    bottleneck: int = help_field(64, "bottleneck width M")
    weights: Weights = help_field(Weights.DNN, "dnn: dense layers; phm: hypercomplex layers")
    phm_rank: int = help_field(4, "phm: the number n of Kronecker terms (divides H, M, P*H)")
    placement: Placement = help_field(
        Placement.INPUT, "input: P vectors at the input; layers: a key/value prefix in every layer"
    )
    activation: Activation = help_field(Activation.TANH, "nonlinearity in the bottleneck")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("bottleneck", self.bottleneck, 1, 65536, integer=True)
        check_range("phm_rank", self.phm_rank, 1, 64, integer=True)


# -- lpt -----------------------------------------------------------------------------------


class StatePooling(str, enum.Enum):
    """How ``lpt`` reduces the text's (T, H) states at the prompt layer to one vector."""

    AUTO = "auto"  # the authors' (xyltt/LPT): first token on encoders, last real one on decoders
    FIRST = "first"
    LAST = "last"  # the last real token (right padding)
    MEAN = "mean"  # over real tokens
    MAX = "max"  # per feature, over real tokens


@register
@dataclass
class LPTConfig(GeneratorConfig):
    name = "lpt"
    generator_class = "ipt_ray.generators.lpt:LatePromptGenerator"
    #: the LPT authors' rate (RoBERTa-large, batch 32)
    default_lr = 1e-3

    bottleneck: int = help_field(128, "bottleneck width M of the down-projection")
    activation: Activation = help_field(Activation.RELU, "nonlinearity in the bottleneck")
    pooling: StatePooling = help_field(
        StatePooling.AUTO,
        "how the text's states at the prompt layer become one vector: auto (first token on "
        "encoders, last on decoders, as the authors), first, last, mean or max",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("bottleneck", self.bottleneck, 1, 65536, integer=True)


# -- ipt-prefix ----------------------------------------------------------------------------


class InstanceSource(str, enum.Enum):
    """Where ``ipt-prefix``'s instance part comes from (IPT's two strategies)."""

    LOOKUP = "lookup"  # rows of a trainable vocabulary table (ipt-lookup's)
    CNN = "cnn"  # ipt-encoder's encoders over the frozen input embeddings
    LSTM = "lstm"
    MLP = "mlp"


class PrefixLayers(str, enum.Enum):
    FIRST = "first"  # IPT's: only layer 0's prefix gets the instance part
    ALL = "all"  # every layer's gets the same one


@register
@dataclass
class IPTPrefixConfig(GeneratorConfig):
    name = "ipt-prefix"
    generator_class = "ipt_ray.generators.ipt_prefix:IPTPrefix"
    default_lr = 1e-2

    source: InstanceSource = help_field(
        InstanceSource.LOOKUP,
        "the instance part: lookup (a vocabulary table, IPT token-level) or an encoder over "
        "the frozen embeddings: cnn, lstm or mlp",
    )
    scale: float = help_field(0.05, "weight of the instance part added to the static prefix")
    layers: PrefixLayers = help_field(
        PrefixLayers.FIRST,
        "first: the instance part enters layer 0's prefix only (IPT's); all: every layer's",
    )
    rank: int = help_field(
        0, "lookup: 0 a full V x 2W table; r > 0 a V x r table times an r x 2W projection"
    )
    hidden: int = help_field(128, "cnn/lstm/mlp: encoder width h (per direction for lstm)")
    kernel_size: int = help_field(3, "cnn: window in tokens (odd)")
    num_kernels: int = help_field(
        1, "cnn: windows kernel_size, kernel_size + 1, ... (ipt-encoder's)"
    )
    lstm_layers: int = help_field(1, "lstm: stacked bidirectional layers")
    readout: Readout = help_field(
        Readout.TOKENS,
        "cnn/lstm/mlp: tokens (the first P outputs) or pooled (one pooled vector projected to "
        "all P), as ipt-encoder's",
    )
    init_std: float = help_field(
        0.02, "standard deviation of the static prefix and of the lookup table"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("scale", self.scale, 0.0, 1e3)
        check_range("rank", self.rank, 0, 65536, integer=True)
        self.encoder_config()  # the encoder knobs, checked as ipt-encoder checks them

    def encoder_config(self) -> EncoderConfig:
        """The ``ipt-encoder`` knobs of the instance part (meaningful unless source=lookup).

        Raises:
            ConfigError: an invalid encoder knob, named as in ipt-encoder.
        """
        encoder = EncoderKind.LSTM if self.source is InstanceSource.LOOKUP else self.source.value
        return EncoderConfig(
            prompt_length=self.prompt_length,
            encoder=EncoderKind(encoder),
            hidden=self.hidden,
            kernel_size=self.kernel_size,
            num_kernels=self.num_kernels,
            lstm_layers=self.lstm_layers,
            readout=self.readout,
        )
