"""The magnitude-phase conformer network: two-stage (time, then frequency) conformer
blocks between an encoder and parallel magnitude and phase decoders.

Waveform in, waveform out through the shared front end
(:class:`~spectral_restore.models.frontend.SpectralModel`). On the compressed
spectrogram ``[batch, frames, bins]``:

- encoder: the compressed magnitude, real and imaginary parts as three channels (as
  CMGAN; MP-SENet's magnitude and phase would hand the network the arbitrary +-pi jump
  of the phase of real-valued bins) -> 1x1 convolution
  at full resolution (``full_resolution_channels``) -> a strided convolution that
  divides the frequency axis by ``freq_stride`` (``channels``) -> a densely connected
  block of convolutions dilated along time;
- ``num_blocks`` two-stage conformer blocks: a conformer attending over time (one
  sequence per frequency point), then one attending over frequency (one sequence per
  frame), each with a residual connection;
- magnitude decoder: dense block -> transposed convolution back to every bin, plus
  the encoder's full-resolution features -> a mask ``0 < M < 2`` through the
  learnable sigmoid (beta = 2) that multiplies the compressed input magnitude;
- phase decoder: dense block -> transposed convolution, plus the same features ->
  two parallel 1x1 convolutions (pseudo real and imaginary parts) -> ``atan2``.

Architecture after MP-SENet (Lu, Ai, Ling, "MP-SENet: A speech enhancement model with
parallel denoising of magnitude and phase spectra", Interspeech 2023; extended in
"Explicit estimation of magnitude and phase spectra in parallel for high-quality speech
enhancement", arXiv:2308.08926) and CMGAN (Cao, Abdulatif, Yang, "CMGAN: Conformer-based
metric GAN for speech enhancement", Interspeech 2022, arXiv:2203.15149); the conformer
block is that of Gulati et al., "Conformer: convolution-augmented transformer for speech
recognition", Interspeech 2020. The ``base`` preset has MP-SENet's sizes (64 channels,
dense blocks of depth 4, four two-stage blocks of four heads, convolution kernel 31,
frequency halved): 2.05 M parameters.

Where it departs from MP-SENet, and why:

- the encoder's dense block runs after the frequency downsampling, at the conformers'
  resolution, as the decoders' do (MP-SENet runs it at full resolution, its costliest
  layer); the decoders instead add the encoder's full-resolution features (a U-Net
  skip), so fine frequency detail still reaches the mask and the phase. This is what
  lets a CPU preset use coarse frequency tokens (16 bins) at all;
- the phase decoder's two outputs are added to the input's unit phasor
  ``C / |C| = (cos phi, sin phi)`` before ``atan2``, and the last layer of both decoders starts
  at zero, so the untrained network is the identity (mask 1, phase unchanged), as the
  CRN is: restoration starts from "do no harm";
- dropout falls on the attention's output (the conformer paper's placement), not on its
  weights (MP-SENet's), so that the attention runs as one fused kernel where the
  backend has one (cuDNN's flash attention under JAX on a GPU) and keeps no
  ``[length, length]`` weights for the backward pass.
"""

import keras
from keras import layers, ops

from spectral_restore import spectral
from spectral_restore.models.discriminators import LearnableSigmoid
from spectral_restore.models.frontend import COMPRESSION, SpectralModel, resolve_settings
from spectral_restore.models.layers import Conv2DTranspose

register = keras.saving.register_keras_serializable(package="spectral_restore")

PRESETS = {
    # Trains on a 2-core CPU (TensorFlow) at 1.3-1.5x the CRN `small`'s step time
    # (benchmarks/train_speed.py): frequency tokens of 16 bins, one head, two blocks.
    "small": {
        "channels": 16,
        "full_resolution_channels": 4,
        "dense_depth": 2,
        "num_blocks": 2,
        "num_heads": 1,
        "ffn_multiplier": 2,
        "conv_expansion": 2,
        "conv_kernel": 7,
        "freq_stride": 16,
        "dropout": 0.0,
        "gate": True,
    },
    # MP-SENet's sizes (Lu et al. 2023), for GPU training: 2.05 M parameters.
    "base": {
        "channels": 64,
        "full_resolution_channels": 64,
        "dense_depth": 4,
        "num_blocks": 4,
        "num_heads": 4,
        "ffn_multiplier": 4,
        "conv_expansion": 2,
        "conv_kernel": 31,
        "freq_stride": 2,
        "dropout": 0.2,
        "gate": False,
    },
}
# The learnable sigmoid's bound: MP-SENet's beta = 2, so the mask can also amplify.
MASK_BOUND = 2.0
# PReLU's initial slope (He et al. 2015; torch.nn.PReLU's default).
PRELU_SLOPE = 0.25
NORM_EPSILON = 1e-5
# The gate's initial logit: g = sigmoid(3) = 0.95, so training starts with the
# decoders' estimate almost alone (the untrained network is the identity either way).
GATE_BIAS = 3.0
# Under ``gate_supervision``, a frame whose input differs from the target by more than
# this fraction of the target's energy (a frame SNR below 30 dB) is one the gate should
# open (target 1); the others, silence in both included, it should leave to the input (0).
GATE_TARGET_DISTORTION = 1e-3
# Frame energy (sum of squared STFT values) below which a difference counts as none:
# far under any audible level, above the compression's round-trip error in silence.
GATE_TARGET_FLOOR = 1e-8


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return value


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool. Received: {name}={value!r}")
    return value


def _instance_norm(name):
    """Per-example, per-channel normalisation over time and frequency, with a learned
    scale and shift per channel (``InstanceNorm2d(affine=True)``)."""
    return layers.GroupNormalization(groups=-1, epsilon=NORM_EPSILON, name=name)


def _prelu(name):
    """PReLU with one slope per channel (shared over time and frequency)."""
    return layers.PReLU(
        alpha_initializer=keras.initializers.Constant(PRELU_SLOPE), shared_axes=[1, 2], name=name
    )


@register
class DenseBlock(layers.Layer):
    """Densely connected 2-D convolutions, dilated along time, on ``[batch, frames, bins, channels]``.

    Formula: ``y_0 = x``; ``y_i = PReLU(IN(Conv_i([y_{i-1}, ..., y_0])))`` for
    ``i = 1..depth``, ``Conv_i`` a ``kernel_size`` convolution dilated ``2^(i-1)``
    along time with ``channels`` outputs; the block returns ``y_depth``. The
    receptive field along time grows to ``1 + (k - 1)(2^depth - 1)`` frames.

    Args:
        channels: int. Output channels of every convolution.
        depth: int. Convolutions in the block. Defaults to 4.
        kernel_size: tuple of int. (time, frequency) kernel. Defaults to (3, 3).

    Reference: MP-SENet's and CMGAN's dilated DenseNet blocks (after Huang et al.,
    "Densely connected convolutional networks", CVPR 2017).
    """

    def __init__(self, channels, depth=4, kernel_size=(3, 3), **kwargs):
        super().__init__(**kwargs)
        self.channels = _check_positive_int("channels", channels)
        self.depth = _check_positive_int("depth", depth)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.convs = [
            layers.Conv2D(
                channels,
                self.kernel_size,
                dilation_rate=(2**i, 1),
                padding="same",
                use_bias=False,
                name=f"conv_{i}",
            )
            for i in range(depth)
        ]
        self.norms = [_instance_norm(f"norm_{i}") for i in range(depth)]
        self.activations = [_prelu(f"prelu_{i}") for i in range(depth)]

    def call(self, x):
        stack = x
        for conv, norm, activation in zip(self.convs, self.norms, self.activations):
            x = activation(norm(conv(stack)))
            stack = ops.concatenate([x, stack], axis=-1)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.channels,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"channels": self.channels, "depth": self.depth, "kernel_size": list(self.kernel_size)}
        )
        return config


@register
class ConformerBlock(layers.Layer):
    """A conformer block on sequences ``[batch, length, channels]``.

    Formula: ``x += FFN_1(x) / 2``; ``x += Dropout(MHSA(LN(x)))``; ``x += ConvModule(x)``;
    ``x += FFN_2(x) / 2``; ``y = LN(x)``, with ``FFN = LN -> Dense(m C) -> Swish ->
    Dropout -> Dense(C) -> Dropout`` and ``ConvModule = LN -> Dense(2 e C) -> GLU ->
    depthwise Conv1D(k) -> BatchNorm -> Swish -> Dense(C)``. No positional encoding:
    the depthwise convolution carries position.

    Args:
        channels: int. Model width ``C``; divisible by ``num_heads``.
        num_heads: int. Attention heads. Defaults to 4.
        ffn_multiplier: int. Feed-forward expansion ``m``. Defaults to 4.
        conv_expansion: int. Convolution-module expansion ``e``. Defaults to 2.
        conv_kernel: int. Depthwise kernel ``k`` (odd). Defaults to 31.
        dropout: float. Dropout of the feed-forward modules and of the attention's
            output. Defaults to 0.

    Reference: Gulati et al., "Conformer", Interspeech 2020, as used by CMGAN
    (Cao et al. 2022) and MP-SENet (Lu et al. 2023).
    """

    def __init__(
        self,
        channels,
        num_heads=4,
        ffn_multiplier=4,
        conv_expansion=2,
        conv_kernel=31,
        dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channels = _check_positive_int("channels", channels)
        self.num_heads = _check_positive_int("num_heads", num_heads)
        self.ffn_multiplier = _check_positive_int("ffn_multiplier", ffn_multiplier)
        self.conv_expansion = _check_positive_int("conv_expansion", conv_expansion)
        self.conv_kernel = _check_positive_int("conv_kernel", conv_kernel)
        self.dropout = float(dropout)
        if channels % num_heads:
            raise ValueError(
                f"`channels` must be divisible by `num_heads`. Received: channels={channels}, num_heads={num_heads}"
            )
        if conv_kernel % 2 == 0:
            raise ValueError(
                f"`conv_kernel` must be odd (centred). Received: conv_kernel={conv_kernel}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
        inner = conv_expansion * channels
        self.ffn = [self._feed_forward(f"ffn_{i}") for i in (1, 2)]
        self.attention_norm = layers.LayerNormalization(name="attention_norm")
        # Dropout on the attention's output, not on its weights (Gulati et al.'s placement):
        # undropped weights let the attention run as one fused kernel (cuDNN's flash
        # attention under JAX on a GPU, no [length, length] scores kept for the backward pass).
        self.attention = layers.MultiHeadAttention(
            num_heads, channels // num_heads, name="attention"
        )
        self.attention_dropout = layers.Dropout(self.dropout, name="attention_dropout")
        self.conv_norm = layers.LayerNormalization(name="conv_norm")
        self.conv_in = layers.Dense(2 * inner, name="conv_pointwise_in")
        # No bias before the batch norm, which removes it.
        self.conv_depthwise = layers.DepthwiseConv1D(
            conv_kernel, padding="same", use_bias=False, name="conv_depthwise"
        )
        self.conv_batch_norm = layers.BatchNormalization(name="conv_batch_norm")
        self.conv_out = layers.Dense(channels, name="conv_pointwise_out")
        self.output_norm = layers.LayerNormalization(name="output_norm")

    def _feed_forward(self, name):
        return [
            layers.LayerNormalization(name=f"{name}_norm"),
            layers.Dense(self.ffn_multiplier * self.channels, name=f"{name}_in"),
            layers.Dense(self.channels, name=f"{name}_out"),
            layers.Dropout(self.dropout, name=f"{name}_dropout"),
        ]

    @staticmethod
    def _apply_feed_forward(modules, x, training):
        norm, expand, project, dropout = modules
        hidden = dropout(ops.silu(expand(norm(x))), training=training)
        return dropout(project(hidden), training=training)

    def call(self, x, training=False):
        x = x + 0.5 * self._apply_feed_forward(self.ffn[0], x, training)
        normed = self.attention_norm(x)
        x = x + self.attention_dropout(
            self.attention(normed, normed, training=training), training=training
        )
        hidden = ops.glu(self.conv_in(self.conv_norm(x)), axis=-1)
        hidden = ops.silu(self.conv_batch_norm(self.conv_depthwise(hidden), training=training))
        x = x + self.conv_out(hidden)
        x = x + 0.5 * self._apply_feed_forward(self.ffn[1], x, training)
        return self.output_norm(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": self.channels,
                "num_heads": self.num_heads,
                "ffn_multiplier": self.ffn_multiplier,
                "conv_expansion": self.conv_expansion,
                "conv_kernel": self.conv_kernel,
                "dropout": self.dropout,
            }
        )
        return config


@register
class TimeFrequencyConformer(layers.Layer):
    """Two-stage conformer on ``[batch, frames, bins, channels]``: over time, then over frequency.

    Formula: with ``x`` reshaped to one sequence per bin ``[batch * bins, frames, C]``,
    ``x = T(x) + x``; reshaped to one sequence per frame ``[batch * frames, bins, C]``,
    ``x = F(x) + x``; ``T`` and ``F`` are :class:`ConformerBlock` s.

    Args:
        channels, num_heads, ffn_multiplier, conv_expansion, conv_kernel, dropout:
            as :class:`ConformerBlock`.
        remat: bool. In training, keep only each block's input for the backward pass
            and recompute its activations there (gradient checkpointing: less memory,
            one more forward pass of the blocks). Same outputs and gradients.
            Defaults to False.

    Reference: the two-stage conformer blocks of CMGAN (Cao et al. 2022) and MP-SENet
    (Lu et al. 2023); rematerialisation after Chen et al., "Training deep nets with
    sublinear memory cost", arXiv:1604.06174.
    """

    def __init__(
        self,
        channels,
        num_heads=4,
        ffn_multiplier=4,
        conv_expansion=2,
        conv_kernel=31,
        dropout=0.0,
        remat=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.block_settings = dict(
            channels=channels,
            num_heads=num_heads,
            ffn_multiplier=ffn_multiplier,
            conv_expansion=conv_expansion,
            conv_kernel=conv_kernel,
            dropout=dropout,
        )
        self.remat = _check_bool("remat", remat)
        self.time_block = ConformerBlock(**self.block_settings, name="time")
        self.freq_block = ConformerBlock(**self.block_settings, name="frequency")

    def call(self, x, training=False):
        # Dynamic sizes: inside a traced serving function only the channels are static.
        batch, frames, bins = ops.shape(x)[0], ops.shape(x)[1], ops.shape(x)[2]
        channels = x.shape[3]
        per_bin = ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (batch * bins, frames, channels))
        per_bin = self._run_block(self.time_block, per_bin, training) + per_bin
        x = ops.transpose(ops.reshape(per_bin, (batch, bins, frames, channels)), (0, 2, 1, 3))
        per_frame = ops.reshape(x, (batch * frames, bins, channels))
        per_frame = self._run_block(self.freq_block, per_frame, training) + per_frame
        return ops.reshape(per_frame, (batch, frames, bins, channels))

    def _run_block(self, block, x, training):
        if not (self.remat and training and block.built):
            return block(x, training=training)
        # Through the block's stateless call, so that its state updates (batch-norm
        # statistics, dropout seeds) leave the recomputed function as outputs and are
        # assigned here, once, instead of escaping it.
        trainable, non_trainable = block.trainable_variables, block.non_trainable_variables
        count = len(trainable)

        def stateless(x, *values):
            outputs, updated = block.stateless_call(
                list(values[:count]), list(values[count:]), x, training=True
            )
            return outputs, *updated

        outputs, *updated = keras.remat(stateless)(x, *(v.value for v in trainable + non_trainable))
        for variable, value in zip(non_trainable, updated):
            variable.assign(value)
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(self.block_settings)
        config["remat"] = self.remat
        return config


@register
class MagnitudePhaseConformer(SpectralModel):
    """Restores waveforms ``[batch, samples]`` by parallel magnitude and phase estimation.

    Formula: with ``C = |C| e^{j phi}`` the compressed STFT of the input (``c = 0.3``;
    ``|C|`` floored at 1e-6, so ``(cos phi, sin phi) = C / |C|`` shrinks to 0 in silence),
    ``h`` the encoder and conformer features, ``M = 2 sigmoid(a_f D_M(h))`` the
    magnitude decoder's mask and ``(r, i) = D_P(h)`` the phase decoder's two outputs,
    the estimate is ``|C_hat| = M |C|`` and ``angle C_hat = atan2(sin phi + i, cos phi + r)``;
    with ``gate``, ``C_hat`` becomes ``g C_hat + (1 - g) C`` for a per-frame
    ``g = sigmoid(w . mean_f h + b)``, outside training passed through
    ``max(g - t, 0) / (1 - t)`` for ``gate_threshold`` ``t``; the output is
    ``iSTFT(|C_hat|^{1/c} e^{j angle C_hat})``, cut to the input length.
    ``atan2`` is the floored one of :func:`spectral_restore.spectral.phase` (finite,
    zero gradient where both parts vanish).

    Args:
        preset: str or None. "small" or "base" (``PRESETS``); explicit arguments
            override it. Defaults to "small".
        channels: int. Width of the dense blocks and conformers (at the reduced
            frequency resolution).
        full_resolution_channels: int. Width of the layers at full frequency
            resolution (the encoder's first and the decoders' last stage).
        dense_depth: int. Convolutions per dense block (encoder and both decoders).
        num_blocks: int. Two-stage (time, frequency) conformer blocks.
        num_heads: int. Attention heads per conformer; divides ``channels``.
        ffn_multiplier: int. Conformer feed-forward expansion.
        conv_expansion: int. Conformer convolution-module expansion.
        conv_kernel: int. Conformer depthwise kernel (odd).
        freq_stride: int. Frequency downsampling of the encoder (MP-SENet: 2);
            ``fft_length // 2`` must be divisible by it.
        dropout: float. Conformer dropout (feed-forward modules and attention output).
        gate: bool. Blend the estimate with the input by a learned per-frame gate
            ``g`` in (0, 1): ``C_out = g C_hat + (1 - g) C``. Frames the network
            judges undamaged can pass through unchanged (``g -> 0``) instead of
            every bin's mask having to learn exactly 1: "do no harm" becomes one
            decision per frame. ``small``: True, ``base``: False (as published).
        stft_config, sample_rate, input_damage: the front end's, as
            :class:`~spectral_restore.models.frontend.SpectralModel`.
        remat: bool. Recompute the conformer blocks' activations in the backward
            pass instead of keeping them (:class:`TimeFrequencyConformer`): for a
            batch that would not fit in an accelerator's memory. Defaults to False.
        gate_threshold: float in [0, 1). Outside training (inference, validation,
            export) the gate becomes ``max(g - t, 0) / (1 - t)``: frames where the
            network weighs its input above its estimate (``g <= t``) pass through bit
            for bit, and the rest blend as before, rescaled to reach 1 at ``g = 1``.
            Training keeps the soft gate. Set it on a trained model, before its first
            call or export (``model.gate_threshold = 0.5``): trained with it, the gate
            learns to sit above ``t`` and nothing is gained (benchmarks/README.md).
            Defaults to 0.
        gate_supervision: float >= 0, 0 without ``gate``. Weight of the gate's mean
            per-frame binary cross-entropy against :meth:`gate_targets` (where the
            input differs from the target), added by ``compute_loss`` to the training
            loss (not to validation); the GAN's steps do not call it. Defaults to 0.

    The untrained network is the identity up to the magnitude floor: both decoders'
    last layers start at zero (mask 1, phase unchanged). Attention spans the whole
    input, so memory grows with the square of its length: restore long recordings in
    chunks (the SavedModel export does).

    Example:
    >>> import numpy as np
    >>> model = MagnitudePhaseConformer("small")
    >>> tuple(model(np.zeros((2, 4000), "float32")).shape)
    (2, 4000)

    Reference: MP-SENet (Lu et al., Interspeech 2023; arXiv:2308.08926) and CMGAN
    (Cao et al., Interspeech 2022, arXiv:2203.15149).
    """

    PRESETS = PRESETS

    def __init__(
        self,
        preset="small",
        channels=None,
        full_resolution_channels=None,
        dense_depth=None,
        num_blocks=None,
        num_heads=None,
        ffn_multiplier=None,
        conv_expansion=None,
        conv_kernel=None,
        freq_stride=None,
        dropout=None,
        gate=None,
        stft_config=None,
        sample_rate=16000,
        input_damage=None,
        remat=False,
        gate_threshold=0.0,
        gate_supervision=0.0,
        **kwargs,
    ):
        super().__init__(
            stft_config=stft_config, sample_rate=sample_rate, input_damage=input_damage, **kwargs
        )
        settings = resolve_settings(
            PRESETS,
            preset,
            {
                "channels": channels,
                "full_resolution_channels": full_resolution_channels,
                "dense_depth": dense_depth,
                "num_blocks": num_blocks,
                "num_heads": num_heads,
                "ffn_multiplier": ffn_multiplier,
                "conv_expansion": conv_expansion,
                "conv_kernel": conv_kernel,
                "freq_stride": freq_stride,
                "dropout": dropout,
                "gate": gate,
            },
        )
        self.preset = preset
        for name in (
            "channels",
            "full_resolution_channels",
            "dense_depth",
            "num_blocks",
            "num_heads",
            "ffn_multiplier",
            "conv_expansion",
            "conv_kernel",
            "freq_stride",
        ):
            setattr(self, name, _check_positive_int(name, settings[name]))
        self.dropout = float(settings["dropout"])
        self.gate = _check_bool("gate", settings["gate"])
        self.gate_threshold = float(gate_threshold)
        if not 0.0 <= self.gate_threshold < 1.0:
            raise ValueError(
                f"`gate_threshold` must be in [0, 1). Received: gate_threshold={gate_threshold!r}"
            )
        self.gate_supervision = float(gate_supervision)
        if not self.gate_supervision >= 0.0 or (self.gate_supervision and not self.gate):
            raise ValueError(
                "`gate_supervision` must be a number >= 0, and 0 without `gate`. "
                f"Received: gate_supervision={gate_supervision!r}, gate={self.gate}"
            )
        self.remat = _check_bool("remat", remat)
        intervals = self.stft_config.num_bins - 1
        if intervals % self.freq_stride:
            raise ValueError(
                f"fft_length // 2 = {intervals} must be divisible by `freq_stride`. Received: freq_stride={self.freq_stride}"
            )
        # Convolutions followed by instance normalisation have no bias: the norm removes it.
        self.encoder_in = layers.Conv2D(
            self.full_resolution_channels, (1, 1), use_bias=False, name="encoder_in"
        )
        self.encoder_in_norm = _instance_norm("encoder_in_norm")
        self.encoder_in_prelu = _prelu("encoder_in_prelu")
        self.encoder_down = layers.Conv2D(
            self.channels, **self._frequency_resampling(), name="encoder_down"
        )
        self.encoder_down_norm = _instance_norm("encoder_down_norm")
        self.encoder_down_prelu = _prelu("encoder_down_prelu")
        self.encoder_dense = DenseBlock(self.channels, self.dense_depth, name="encoder_dense")
        self.blocks = [
            TimeFrequencyConformer(
                self.channels,
                self.num_heads,
                self.ffn_multiplier,
                self.conv_expansion,
                self.conv_kernel,
                self.dropout,
                self.remat,
                name=f"tf_conformer_{i}",
            )
            for i in range(self.num_blocks)
        ]
        self.mask_trunk = self._decoder_trunk("mask")
        # Zero-initialised last layers: the untrained model is the identity (mask 1, phase unchanged).
        self.mask_head = layers.Conv2D(1, (1, 1), kernel_initializer="zeros", name="mask_head")
        # MP-SENet's learnable sigmoid: a slope per bin, bound 2; float32 under mixed precision.
        self.mask_sigmoid = LearnableSigmoid(MASK_BOUND, dtype="float32", name="mask_sigmoid")
        self.phase_trunk = self._decoder_trunk("phase")
        self.phase_head_real = layers.Conv2D(
            1, (1, 1), kernel_initializer="zeros", name="phase_head_real"
        )
        self.phase_head_imag = layers.Conv2D(
            1, (1, 1), kernel_initializer="zeros", name="phase_head_imag"
        )
        if self.gate:
            # One logit per frame from the conformer features averaged over frequency.
            self.gate_head = layers.Dense(
                1,
                kernel_initializer="zeros",
                bias_initializer=keras.initializers.Constant(GATE_BIAS),
                name="gate_head",
            )

    def get_config(self):
        config = super().get_config()
        config["remat"] = self.remat
        config["gate_threshold"] = self.gate_threshold
        config["gate_supervision"] = self.gate_supervision
        return config

    @classmethod
    def from_config(cls, config):
        # Files saved before the gate existed have no "gate" key: they load without one
        # (and, saved before its threshold, with the default 0).
        return super().from_config({"gate": False, **config})

    def _frequency_resampling(self):
        """A (1, s + 1) kernel with stride s maps bins 0..F-1 onto (F - 1) / s + 1 points,
        and the transposed convolution maps them back onto exactly F bins."""
        return {
            "kernel_size": (1, self.freq_stride + 1),
            "strides": (1, self.freq_stride),
            "use_bias": False,
        }

    def _decoder_trunk(self, prefix):
        """A decoder up to its heads: dense block, transposed convolution back to every
        bin (to which the encoder's full-resolution features are added), norm, PReLU."""
        return [
            DenseBlock(self.channels, self.dense_depth, name=f"{prefix}_dense"),
            Conv2DTranspose(
                self.full_resolution_channels, **self._frequency_resampling(), name=f"{prefix}_up"
            ),
            _instance_norm(f"{prefix}_norm"),
            _prelu(f"{prefix}_prelu"),
        ]

    @staticmethod
    def _run_trunk(trunk, x, fine):
        dense, up, norm, prelu = trunk
        return prelu(norm(up(dense(x)) + fine))

    def decode(self, magnitude, real, imag, training=False):
        """The mask ``[batch, frames, bins]`` in ``(0, 2)``, the phase decoder's two
        outputs ``(r, i)`` and the gate ``[batch, frames, 1]`` in ``(0, 1)`` (None
        without ``gate``), float32, for the compressed input's magnitude, real and
        imaginary parts."""
        features = ops.stack([magnitude, real, imag], axis=-1)
        fine = self.encoder_in_prelu(self.encoder_in_norm(self.encoder_in(features)))
        x = self.encoder_down_prelu(self.encoder_down_norm(self.encoder_down(fine)))
        x = self.encoder_dense(x)
        for block in self.blocks:
            x = block(x, training=training)
        mask = self.mask_sigmoid(self.mask_head(self._run_trunk(self.mask_trunk, x, fine))[..., 0])
        p = self._run_trunk(self.phase_trunk, x, fine)
        phase_real = ops.cast(self.phase_head_real(p)[..., 0], "float32")
        phase_imag = ops.cast(self.phase_head_imag(p)[..., 0], "float32")
        gate = None
        if self.gate:
            gate = ops.sigmoid(ops.cast(self.gate_head(ops.mean(x, axis=2)), "float32"))
        return mask, phase_real, phase_imag, gate

    def gate_targets(self, real, imag, clean):
        """Per-frame targets ``[batch, frames]`` of the gate, float32: 1 where the
        input (compressed ``(real, imag)``) differs from the ``clean`` waveform's STFT
        by more than ``GATE_TARGET_DISTORTION`` of its energy (plus
        ``GATE_TARGET_FLOOR``), else 0."""
        x_real, x_imag = spectral.compress_complex(real, imag, 1.0 / COMPRESSION)
        y_real, y_imag = spectral.stft(ops.cast(clean, "float32"), self.stft_config)
        distortion = ops.sum(ops.square(x_real - y_real) + ops.square(x_imag - y_imag), axis=-1)
        energy = ops.sum(ops.square(y_real) + ops.square(y_imag), axis=-1)
        return ops.cast(distortion > GATE_TARGET_DISTORTION * energy + GATE_TARGET_FLOOR, "float32")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        step = self.__dict__.pop("_gate_step", None)
        if not training or step is None or y is None:
            return total
        gate, real, imag = step
        cross_entropy = ops.mean(
            ops.binary_crossentropy(self.gate_targets(real, imag, y), gate[..., 0])
        )
        return total + ops.cast(self.gate_supervision * cross_entropy, total.dtype)

    def restore_spectrogram(self, real, imag, training=False):
        """Compressed input ``(real, imag)`` ``[batch, frames, bins]`` -> compressed estimate."""
        magnitude = spectral.magnitude(real, imag)
        mask, phase_real, phase_imag, gate = self.decode(magnitude, real, imag, training=training)
        phase = spectral.phase(real / magnitude + phase_real, imag / magnitude + phase_imag)
        magnitude = magnitude * mask
        est_real, est_imag = magnitude * ops.cos(phase), magnitude * ops.sin(phase)
        if gate is None:
            return est_real, est_imag
        if training and self.gate_supervision:
            # compute_loss, which runs next in the same step, scores the gate.
            self.__dict__["_gate_step"] = (gate, real, imag)
        if not training and self.gate_threshold:
            gate = ops.relu(gate - self.gate_threshold) / (1.0 - self.gate_threshold)
        return gate * est_real + (1.0 - gate) * real, gate * est_imag + (1.0 - gate) * imag
