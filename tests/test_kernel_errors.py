"""Bad input is refused, by the kernels and by the reference alike, with a clear message.

API.md: a ValueError/TypeError whose message names the argument, what was expected and what
was given. Each case below checks the exception type and, with several regular expressions
that must all be found in the message, that it names the argument and shows the values.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import cyconv
from cyconv import kernels as K
from cyconv import reference as R

MODULES = {"kernels": K, "reference": R}

F64 = np.float64
x = np.ones((2, 3, 5, 5))                  # a valid input
w = np.ones((4, 3, 3, 3))                  # a valid weight for it
b = np.ones(4)
gy = np.ones((2, 4, 3, 3))                 # the matching grad_output
x32 = x.astype(np.float32)
pool_gy = np.ones((2, 3, 2, 2))            # grad_output of a 2x2 pooling of x
pool_idx = np.zeros((2, 3, 2, 2), np.int64)


def num(value) -> str:
    """A regex matching ``value``'s repr exactly (tuples have parentheses to escape)."""
    return re.escape(repr(value))


# case id -> (call(module), exception type, regexes that must all occur in the message)
CASES = {
    # ---- arrays: type, ndim, dtype -------------------------------------------------------
    "conv input 3-D": (lambda m: m.conv2d(x[0], w), ValueError,
                       [r"\binput\b", r"4-D", r"3-D", num((3, 5, 5))]),
    "conv weight 5-D": (lambda m: m.conv2d(x, w[None]), ValueError, [r"\bweight\b", r"4-D", r"5-D"]),
    "conv bias 2-D": (lambda m: m.conv2d(x, w, b[None]), ValueError, [r"\bbias\b", r"1-D", r"2-D"]),
    "conv input is a list": (lambda m: m.conv2d(x.tolist(), w), TypeError,
                             [r"\binput\b", r"numpy\.ndarray", r"\blist\b"]),
    "conv input int64": (lambda m: m.conv2d(x.astype(np.int64), w), TypeError,
                         [r"\binput\b", r"float32 or float64", r"int64"]),
    "conv weight int32": (lambda m: m.conv2d(x, w.astype(np.int32)), TypeError,
                          [r"\bweight\b", r"float32 or float64", r"int32"]),
    "conv input bool": (lambda m: m.conv2d(x > 0, w), TypeError, [r"\binput\b", r"bool"]),
    "conv input complex": (lambda m: m.conv2d(x.astype(complex), w), TypeError,
                           [r"\binput\b", r"complex128"]),
    "conv input float16": (lambda m: m.conv2d(x.astype(np.float16), w), TypeError,
                           [r"\binput\b", r"float16"]),
    "conv weight float64, input float32": (lambda m: m.conv2d(x32, w), TypeError,
                                           [r"\bweight\b", r"\binput\b", r"float64", r"float32"]),
    "conv bias float32, input float64": (lambda m: m.conv2d(x, w, b.astype(np.float32)), TypeError,
                                         [r"\bbias\b", r"\binput\b", r"float32", r"float64"]),
    "pool input 5-D": (lambda m: m.max_pool2d(x[None], 2), ValueError, [r"\binput\b", r"4-D", r"5-D"]),
    "pool input int": (lambda m: m.avg_pool2d(x.astype(np.int16), 2), TypeError,
                       [r"\binput\b", r"int16"]),
    "adaptive input 2-D": (lambda m: m.adaptive_avg_pool2d(x[0, 0], 1), ValueError,
                           [r"\binput\b", r"4-D", r"2-D"]),
    "adaptive input uint8": (lambda m: m.adaptive_avg_pool2d(x.astype(np.uint8), 1), TypeError,
                             [r"\binput\b", r"uint8"]),
    "grad_bias 2-D": (lambda m: m.conv2d_grad_bias(np.ones((3, 3))), ValueError,
                      [r"grad_output", r"4-D", r"2-D"]),
    "grad_bias int": (lambda m: m.conv2d_grad_bias(np.ones((1, 3, 2, 2), int)), TypeError,
                      [r"grad_output", r"int64"]),

    # ---- channels and groups ---------------------------------------------------------------
    "channel mismatch": (lambda m: m.conv2d(x, np.ones((4, 2, 3, 3))), ValueError,
                         [r"\bweight\b", r"\b2 input channels", r"input has 3\b"]),
    "channel mismatch with groups": (lambda m: m.conv2d(np.ones((1, 4, 5, 5)), np.ones((4, 1, 3, 3)),
                                                        groups=2), ValueError,
                                     [r"\b2 input channels", r"1 per group", r"2 groups", r"\b4\b"]),
    "grad_weight channel mismatch": (lambda m: m.conv2d_grad_weight(gy, x, (4, 2, 3, 3)), ValueError,
                                     [r"\b2 input channels", r"input has 3\b"]),
    "grad_input channel mismatch": (lambda m: m.conv2d_grad_input(gy, w, (2, 4, 5, 5)), ValueError,
                                    [r"\b3 input channels", r"input has 4\b"]),
    "groups do not divide input channels": (lambda m: m.conv2d(np.ones((1, 4, 5, 5)), np.ones((3, 1, 3, 3)),
                                                               groups=3), ValueError,
                                            [r"groups=3", r"divide", r"input channels", r"\b4\b"]),
    "groups do not divide output channels": (lambda m: m.conv2d(np.ones((1, 4, 5, 5)), np.ones((5, 2, 3, 3)),
                                                                groups=2), ValueError,
                                             [r"groups=2", r"divide", r"output channels", r"\b5\b"]),
    "groups 0": (lambda m: m.conv2d(x, w, groups=0), ValueError, [r"\bgroups\b", r"positive", r"\b0\b"]),
    "groups -1": (lambda m: m.conv2d(x, w, groups=-1), ValueError, [r"\bgroups\b", r"positive", r"-1"]),
    "groups float": (lambda m: m.conv2d(x, w, groups=1.0), TypeError, [r"\bgroups\b", r"\bint\b", r"1\.0"]),
    "groups bool": (lambda m: m.conv2d(x, w, groups=True), TypeError, [r"\bgroups\b", r"True"]),
    "bias of the wrong length": (lambda m: m.conv2d(x, w, np.ones(3)), ValueError,
                                 [r"\bbias\b", r"output channel", r"\b4\b", r"\b3\b"]),
    "weight with zero output channels": (lambda m: m.conv2d(x, np.ones((0, 3, 3, 3))), ValueError,
                                         [r"\bweight\b", r"positive", num((0, 3, 3, 3))]),
    "empty batch": (lambda m: m.conv2d(np.ones((0, 3, 5, 5)), w), ValueError,
                    [r"\binput\b", r"positive", num((0, 3, 5, 5))]),

    # ---- hyper-parameters ------------------------------------------------------------------
    "conv stride 0": (lambda m: m.conv2d(x, w, stride=0), ValueError, [r"\bstride\b", r"positive", r"\b0\b"]),
    "conv stride (1, -2)": (lambda m: m.conv2d(x, w, stride=(1, -2)), ValueError,
                            [r"\bstride\b", r"positive", num((1, -2))]),
    "conv stride triple": (lambda m: m.conv2d(x, w, stride=(1, 1, 1)), TypeError,
                           [r"\bstride\b", r"pair", num((1, 1, 1))]),
    "conv stride float": (lambda m: m.conv2d(x, w, stride=1.5), TypeError, [r"\bstride\b", r"1\.5"]),
    "conv dilation 0": (lambda m: m.conv2d(x, w, dilation=0), ValueError,
                        [r"\bdilation\b", r"positive", r"\b0\b"]),
    "conv dilation (-1, 1)": (lambda m: m.conv2d(x, w, dilation=(-1, 1)), ValueError,
                              [r"\bdilation\b", r"positive", num((-1, 1))]),
    "conv padding -1": (lambda m: m.conv2d(x, w, padding=-1), ValueError,
                        [r"\bpadding\b", r"non-negative", r"-1"]),
    "conv padding (0, -2)": (lambda m: m.conv2d(x, w, padding=(0, -2)), ValueError,
                             [r"\bpadding\b", r"non-negative", num((0, -2))]),
    "conv padding 'full'": (lambda m: m.conv2d(x, w, padding="full"), ValueError,
                            [r"\bpadding\b", r"'valid'", r"'same'", r"'full'"]),
    "conv padding 'SAME'": (lambda m: m.conv2d(x, w, padding="SAME"), ValueError,
                            [r"\bpadding\b", r"'SAME'"]),
    "'same' with stride 2": (lambda m: m.conv2d(x, w, stride=2, padding="same"), ValueError,
                             [r"padding='same'", r"stride 1", num((2, 2))]),
    "'same' with stride (1, 2)": (lambda m: m.conv2d(x, w, stride=(1, 2), padding="same"), ValueError,
                                  [r"'same'", r"stride", num((1, 2))]),
    "conv kernel larger than padded input": (lambda m: m.conv2d(x, np.ones((4, 3, 8, 3)), padding=1),
                                             ValueError,
                                             [r"kernel", num((8, 3)), r"padded input", num((7, 7)),
                                              r"output size", num((0, 5))]),
    "conv dilated kernel too large": (lambda m: m.conv2d(x, w, dilation=(1, 3)), ValueError,
                                      [r"kernel", r"dilation", num((1, 3)), r"output size",
                                       num((3, -1))]),
    "pool kernel_size 0": (lambda m: m.max_pool2d(x, 0), ValueError, [r"kernel_size", r"positive"]),
    "pool kernel_size float": (lambda m: m.avg_pool2d(x, 2.0), TypeError, [r"kernel_size", r"2\.0"]),
    "pool stride 0": (lambda m: m.max_pool2d(x, 2, stride=0), ValueError, [r"\bstride\b", r"positive"]),
    "pool stride (2, 0) avg": (lambda m: m.avg_pool2d(x, 2, stride=(2, 0)), ValueError,
                               [r"\bstride\b", r"positive", num((2, 0))]),
    "pool dilation 0": (lambda m: m.max_pool2d(x, 2, dilation=0), ValueError,
                        [r"\bdilation\b", r"positive"]),
    "pool padding -1": (lambda m: m.max_pool2d(x, 2, padding=-1), ValueError,
                        [r"\bpadding\b", r"non-negative", r"-1"]),
    "max pool padding > kernel/2": (lambda m: m.max_pool2d(x, 3, padding=2), ValueError,
                                    [r"\bpadding\b", r"half", r"kernel_size", num((2, 2)), num((3, 3))]),
    "avg pool padding > kernel/2": (lambda m: m.avg_pool2d(x, (2, 4), padding=(1, 3)), ValueError,
                                    [r"\bpadding\b", r"half", num((1, 3)), num((2, 4))]),
    "avg pool grad padding > kernel/2": (lambda m: m.avg_pool2d_grad_input(pool_gy, x.shape, 2,
                                                                            padding=(0, 2)),
                                         ValueError, [r"\bpadding\b", r"half", num((0, 2))]),
    "max pool output size 0": (lambda m: m.max_pool2d(x, 3, dilation=3), ValueError,
                               [r"kernel_size", r"dilation", num((3, 3)), r"output size",
                                num((0, 0))]),
    "avg pool output size 0": (lambda m: m.avg_pool2d(x, (6, 1)), ValueError,
                               [r"kernel_size", num((6, 1)), r"output size", num((0, 5))]),
    "pool ceil_mode int": (lambda m: m.max_pool2d(x, 2, ceil_mode=1), TypeError,
                           [r"ceil_mode", r"bool", r"\b1\b"]),
    "pool ceil_mode string": (lambda m: m.avg_pool2d(x, 2, ceil_mode="True"), TypeError,
                              [r"ceil_mode", r"bool", r"'True'"]),
    "avg count_include_pad string": (lambda m: m.avg_pool2d(x, 2, count_include_pad="no"), TypeError,
                                     [r"count_include_pad", r"bool", r"'no'"]),
    "avg grad count_include_pad None": (lambda m: m.avg_pool2d_grad_input(pool_gy, x.shape, 2,
                                                                          count_include_pad=None),
                                        TypeError, [r"count_include_pad", r"bool", r"None"]),
    "max return_indices int": (lambda m: m.max_pool2d(x, 2, return_indices=0), TypeError,
                               [r"return_indices", r"bool", r"\b0\b"]),
    "adaptive output_size 0": (lambda m: m.adaptive_avg_pool2d(x, 0), ValueError,
                               [r"output_size", r"positive", r"\b0\b"]),
    "adaptive output_size (2, -1)": (lambda m: m.adaptive_avg_pool2d(x, (2, -1)), ValueError,
                                     [r"output_size", r"positive", num((2, -1))]),
    "adaptive output_size triple": (lambda m: m.adaptive_avg_pool2d(x, (2, 2, 2)), TypeError,
                                    [r"output_size", r"pair", num((2, 2, 2))]),
    "adaptive output_size None": (lambda m: m.adaptive_avg_pool2d(x, None), TypeError,
                                  [r"output_size", r"None"]),
    "adaptive output_size float": (lambda m: m.adaptive_avg_pool2d(x, (2, 1.5)), TypeError,
                                   [r"output_size", r"1\.5"]),

    # ---- backward calls: grad_output, shapes, indices ---------------------------------------
    "conv grad_input: grad_output shape": (lambda m: m.conv2d_grad_input(np.ones((2, 4, 4, 4)), w, x.shape),
                                           ValueError,
                                           [r"grad_output", num((2, 4, 3, 3)), num((2, 4, 4, 4))]),
    "conv grad_input: grad_output channels": (lambda m: m.conv2d_grad_input(np.ones((2, 5, 3, 3)), w,
                                                                            x.shape),
                                              ValueError, [r"grad_output", num((2, 4, 3, 3)),
                                                           num((2, 5, 3, 3))]),
    "conv grad_input: grad_output 3-D": (lambda m: m.conv2d_grad_input(gy[0], w, x.shape), ValueError,
                                         [r"grad_output", r"4-D", r"3-D"]),
    "conv grad_input: dtype": (lambda m: m.conv2d_grad_input(gy.astype(np.float32), w, x.shape),
                               TypeError, [r"grad_output", r"\bweight\b", r"float32", r"float64"]),
    "conv grad_input: input_shape 3 ints": (lambda m: m.conv2d_grad_input(gy, w, (2, 3, 5)), ValueError,
                                            [r"input_?\s?shape", r"4 ints", num((2, 3, 5))]),
    "conv grad_input: input_shape floats": (lambda m: m.conv2d_grad_input(gy, w, (2, 3, 5.0, 5)),
                                            ValueError, [r"input_?\s?shape", r"ints", r"5\.0"]),
    "conv grad_input: stride 0": (lambda m: m.conv2d_grad_input(gy, w, x.shape, stride=0), ValueError,
                                  [r"\bstride\b", r"positive"]),
    "conv grad_input: 'same' stride 2": (lambda m: m.conv2d_grad_input(gy, w, x.shape, 2, "same"),
                                         ValueError, [r"'same'", r"stride"]),
    "conv grad_weight: grad_output shape": (lambda m: m.conv2d_grad_weight(np.ones((1, 4, 3, 3)), x, w.shape),
                                            ValueError,
                                            [r"grad_output", num((2, 4, 3, 3)), num((1, 4, 3, 3))]),
    "conv grad_weight: dtype": (lambda m: m.conv2d_grad_weight(gy, x32, w.shape), TypeError,
                                [r"grad_output", r"\binput\b", r"float32", r"float64"]),
    "conv grad_weight: weight_shape": (lambda m: m.conv2d_grad_weight(gy, x, (4, 3, 3)), ValueError,
                                       [r"weight_?\s?shape", r"4 ints", num((4, 3, 3))]),
    "conv grad_weight: groups": (lambda m: m.conv2d_grad_weight(gy, x, w.shape, groups=2), ValueError,
                                 [r"groups=2", r"divide", r"\b3\b"]),
    "max pool grad: grad_output (N, C)": (lambda m: m.max_pool2d_grad_input(np.ones((2, 2, 2, 2)),
                                                                            pool_idx[:, :2], x.shape),
                                          ValueError, [r"grad_output", num((2, 3)), num((2, 2))]),
    "max pool grad: indices float": (lambda m: m.max_pool2d_grad_input(pool_gy, pool_idx.astype(float),
                                                                       x.shape),
                                     TypeError, [r"indices", r"integer", r"float64"]),
    "max pool grad: indices list": (lambda m: m.max_pool2d_grad_input(pool_gy, pool_idx.tolist(), x.shape),
                                    TypeError, [r"indices", r"numpy\.ndarray", r"\blist\b"]),
    "max pool grad: indices shape": (lambda m: m.max_pool2d_grad_input(pool_gy, pool_idx[..., :1],
                                                                       x.shape),
                                     ValueError, [r"indices", r"grad_output", num((2, 3, 2, 2)),
                                                  num((2, 3, 2, 1))]),
    "max pool grad: index too large": (lambda m: m.max_pool2d_grad_input(pool_gy, pool_idx + 25, x.shape),
                                       ValueError, [r"indices", re.escape("[-1, 25)"), r"5x5",
                                                    re.escape("[25, 25]")]),
    "max pool grad: index below -1": (lambda m: m.max_pool2d_grad_input(pool_gy, pool_idx - 2, x.shape),
                                      ValueError, [r"indices", re.escape("[-1, 25)"), r"-2"]),
    "max pool grad: huge uint64 index": (lambda m: m.max_pool2d_grad_input(
                                             pool_gy, pool_idx.astype(np.uint64) + np.uint64(2**63), x.shape),
                                         ValueError, [r"indices", re.escape("[-1, 25)"),
                                                      str(2**63),  # as given, not wrapped to int64
                                                      r"values in \[" + str(2**63)[:-3]]),
    "max pool grad: input_shape": (lambda m: m.max_pool2d_grad_input(pool_gy, pool_idx, (2, 3, 5)),
                                   ValueError, [r"input_shape", r"4 ints"]),
    "max pool grad: grad_output int": (lambda m: m.max_pool2d_grad_input(pool_idx, pool_idx, x.shape),
                                       TypeError, [r"grad_output", r"float32 or float64", r"int64"]),
    "avg pool grad: grad_output shape": (lambda m: m.avg_pool2d_grad_input(np.ones((2, 3, 3, 3)), x.shape, 2),
                                         ValueError, [r"grad_output", num((2, 3, 2, 2)), num((2, 3, 3, 3))]),
    "avg pool grad: input_shape negative": (lambda m: m.avg_pool2d_grad_input(pool_gy, (2, 3, -5, 5), 2),
                                            ValueError, [r"input_?\s?shape", r"negative",
                                                         num((2, 3, -5, 5))]),
    "adaptive grad: (N, C)": (lambda m: m.adaptive_avg_pool2d_grad_input(np.ones((2, 2, 1, 1)), x.shape),
                              ValueError, [r"grad_output", num((2, 3)), num((2, 2))]),
    "adaptive grad: empty grad_output": (lambda m: m.adaptive_avg_pool2d_grad_input(np.ones((2, 3, 0, 2)),
                                                                                    x.shape),
                                         ValueError, [r"output_size|grad_output", r"positive|empty",
                                                      num((0, 2))]),
    "adaptive grad: grad_output 3-D": (lambda m: m.adaptive_avg_pool2d_grad_input(np.ones((3, 1, 1)),
                                                                                  x.shape),
                                       ValueError, [r"grad_output", r"4-D", r"3-D"]),
}


@pytest.mark.parametrize("module", list(MODULES))
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_with_a_clear_message(case, module):
    call, exception, patterns = CASES[case]
    with pytest.raises(exception) as info:
        call(MODULES[module])
    assert type(info.value) is exception        # not a subclass such as an IndexError
    message = str(info.value)
    missing = [p for p in patterns if not re.search(p, message)]
    assert not missing, f"message {message!r} lacks {missing}"


@pytest.mark.parametrize("case", list(CASES))
def test_kernels_and_reference_refuse_in_the_same_words(case):
    """Both layers check through cyconv.geometry, so the messages must be identical."""
    call = CASES[case][0]
    messages = []
    for module in (K, R):
        with pytest.raises((ValueError, TypeError)) as info:
            call(module)
        messages.append((type(info.value), str(info.value)))
    assert messages[0] == messages[1]


# ---------------------------------------------------------------------------------------
# Kernel-only arguments
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("function, args", [
    (K.conv2d, (x, w)),
    (K.conv2d_grad_input, (gy, w, x.shape)),
    (K.conv2d_grad_weight, (gy, x, w.shape)),
])
@pytest.mark.parametrize("algorithm", ["fft", "Direct", "", None, 1])
def test_unknown_algorithm(function, args, algorithm):
    with pytest.raises(ValueError) as info:
        function(*args, algorithm=algorithm)
    message = str(info.value)
    for pattern in (r"\balgorithm\b", r"'auto'", r"'direct'", r"'im2col'", re.escape(repr(algorithm))):
        assert re.search(pattern, message), message


def test_algorithm_is_keyword_only():
    with pytest.raises(TypeError):
        K.conv2d(x, w, None, 1, 0, 1, 1, "direct")


@pytest.mark.parametrize("n, exception, patterns", [
    (0, ValueError, [r"threads", r"at least 1", r"\b0\b"]),
    (-3, ValueError, [r"threads", r"at least 1", r"-3"]),
    ("2", TypeError, [r"threads", r"\bint\b", r"'2'"]),
    (2.0, TypeError, [r"threads", r"\bint\b", r"2\.0"]),
    (True, TypeError, [r"threads", r"\bint\b", r"True"]),
    (None, TypeError, [r"threads", r"\bint\b", r"None"]),
])
@pytest.mark.parametrize("setter", [K.set_num_threads, cyconv.set_num_threads])
def test_set_num_threads_refuses(setter, n, exception, patterns, restore_threads):
    with pytest.raises(exception) as info:
        setter(n)
    assert type(info.value) is exception
    message = str(info.value)
    assert all(re.search(p, message) for p in patterns), message
    assert K.get_num_threads() == restore_threads      # a refused value changes nothing


def test_refused_calls_leave_the_arguments_untouched():
    before = [a.copy() for a in (x, w, b, gy)]
    with pytest.raises(ValueError):
        K.conv2d(x, w, np.ones(3))
    with pytest.raises(TypeError):
        K.conv2d_grad_input(gy.astype(np.float32), w, x.shape)
    for array, copy in zip((x, w, b, gy), before):
        np.testing.assert_array_equal(array, copy)
