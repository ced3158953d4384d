"""Layers shared by the restoration architectures."""

import keras
import numpy as np
from keras import ops

register = keras.saving.register_keras_serializable(package="spectral_restore")


def _polyphase_plan(kernel_size, stride, padding):
    """How one axis of a transposed convolution splits into ``stride`` phases.

    Output ``y[s m + r]`` (phase ``r``) is ``sum_d x[m + d] w[r + p - s d]``, a stride-1
    correlation over the window offsets ``d_min..d_max`` that any phase uses.
    Returns ``(taps, left, right, crop)``: ``taps[t, r]`` the kernel index at offset
    ``d_min + t`` for phase ``r`` (``kernel_size``, one past the last, where the phase
    has no tap there), the zeros to pad the input with on each side so that every phase
    has ``ceil(N / s)`` outputs, and how many of the interleaved ``s ceil(N / s)``
    outputs to drop at the end to leave Keras's output length ``N``.
    """
    overlap = max(kernel_size - stride, 0)
    # Keras's (and TensorFlow's) "same": the forward convolution's padding, the smaller half first.
    pad = overlap // 2 if padding == "same" else 0
    extra = 0 if padding == "same" else overlap
    d_min = -((kernel_size - 1 - pad) // stride)
    d_max = (stride - 1 + pad) // stride
    taps = np.array(
        [[r + pad - stride * d for r in range(stride)] for d in range(d_min, d_max + 1)],
        dtype="int32",
    )
    taps[(taps < 0) | (taps >= kernel_size)] = kernel_size
    phase_extra = -(-extra // stride)
    return taps, -d_min, phase_extra + d_max, stride * phase_extra - extra


@register
class Conv2DTranspose(keras.layers.Conv2DTranspose):
    """``keras.layers.Conv2DTranspose`` computed as one stride-1 convolution (polyphase).

    The same layer as Keras's (same arguments, kernel and bias variables, initializers,
    output), computed differently: the gradient of a strided transposed convolution is
    about ten times slower than its forward pass on XLA's CPU backend (1.6-4.2 s of CPU
    per decoder level of the CRN ``small`` on 16 x 2 s clips), while that of a stride-1
    convolution is not. It keeps Keras's class name on purpose: a saved model's weights file
    addresses the layers in a list by class name (``decoder/conv2d_transpose_1``), so
    files written with ``keras.layers.Conv2DTranspose`` load into it.

    Formula: along an axis of stride ``s`` (``p`` the forward convolution's left
    padding), output ``y[s m + r] = b + sum_d x[m + d] w[r + p - s d]``: phase ``r`` is
    a stride-1 correlation of ``x`` with the kernel taps congruent to ``r + p`` modulo
    ``s``, reversed. The phases of both axes come out of one convolution with
    ``s_t s_f filters`` output channels (the unused window positions of a phase hold
    zeros) and are interleaved (depth to space), as in the sub-pixel convolution.

    Args:
        filters, kernel_size, strides, padding, use_bias, activation, initializers,
            regularizers, constraints: as ``keras.layers.Conv2DTranspose``.
        output_padding: must be None. Defaults to None.
        dilation_rate: must be 1. Defaults to 1.
        data_format: must be "channels_last" (or None with that image data format).

    Example:
    >>> import numpy as np
    >>> layer = Conv2DTranspose(4, (3, 3), strides=(1, 2), padding="same")
    >>> tuple(layer(np.zeros((2, 5, 8, 3), "float32")).shape)
    (2, 5, 16, 4)

    Reference: Shi et al., "Is the deconvolution layer the same as a convolutional
    layer?", arXiv:1609.07009 (2016); Dumoulin & Visin, "A guide to convolution
    arithmetic for deep learning", arXiv:1603.07285 (2016).
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        output_padding=None,
        data_format=None,
        dilation_rate=(1, 1),
        **kwargs,
    ):
        super().__init__(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            output_padding=output_padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            **kwargs,
        )
        if self.output_padding is not None:
            raise ValueError(
                f"`output_padding` must be None. Received: output_padding={output_padding!r}"
            )
        if self.dilation_rate != (1, 1):
            raise ValueError(
                f"`dilation_rate` must be 1. Received: dilation_rate={dilation_rate!r}"
            )
        if self.data_format != "channels_last":
            raise ValueError(
                f"`data_format` must be 'channels_last'. Received: data_format={self.data_format!r}"
            )
        self._plans = tuple(
            _polyphase_plan(k, s, self.padding) for k, s in zip(self.kernel_size, self.strides)
        )

    def _phase_kernel(self):
        """The kernel ``[T_t, T_f, in, s_t * s_f * filters]`` of the phases' convolution."""
        (taps_t, *_), (taps_f, *_) = self._plans
        padded = ops.pad(
            self.kernel, [[0, 1], [0, 1], [0, 0], [0, 0]]
        )  # the zero tap at index kernel_size
        kernel = ops.take(
            ops.take(padded, taps_t, axis=0), taps_f, axis=2
        )  # [T_t, s_t, T_f, s_f, filters, in]
        kernel = ops.transpose(kernel, (0, 2, 5, 1, 3, 4))
        shape = ops.shape(kernel)
        return ops.reshape(kernel, (shape[0], shape[1], shape[2], -1))

    def call(self, inputs):
        (_, left_t, right_t, crop_t), (_, left_f, right_f, crop_f) = self._plans
        stride_t, stride_f = self.strides
        x = ops.pad(inputs, [[0, 0], [left_t, right_t], [left_f, right_f], [0, 0]])
        y = ops.conv(
            x, self._phase_kernel(), strides=1, padding="valid", data_format="channels_last"
        )
        batch, rows, cols = ops.shape(y)[0], ops.shape(y)[1], ops.shape(y)[2]
        y = ops.reshape(y, (batch, rows, cols, stride_t, stride_f, self.filters))
        if self.use_bias:
            y = y + self.bias
        # A time stride of 1 leaves the phases already in order: no transpose to pay for.
        if stride_t > 1:
            y = ops.transpose(y, (0, 1, 3, 2, 4, 5))
        y = ops.reshape(y, (batch, rows * stride_t, cols * stride_f, self.filters))
        if crop_t:
            y = y[:, :-crop_t]
        if crop_f:
            y = y[:, :, :-crop_f]
        if self.activation is not None:
            y = self.activation(y)
        return y
