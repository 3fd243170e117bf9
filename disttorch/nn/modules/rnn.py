"""Recurrent layers: ``RNN``, ``LSTM``, ``GRU`` and their single-step cells.

Shapes (PyTorch's): input (L, N, H_in), or (N, L, H_in) with ``batch_first``, or unbatched
(L, H_in); hidden states (D * num_layers, N, H_out) (unbatched: (D * num_layers, H_out)), D = 2
when bidirectional. Gate order is PyTorch's: LSTM i, f, g, o; GRU r, z, n. Parameters are named
weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k} (+ ``_reverse``; LSTM with
``proj_size`` adds weight_hr_l{k}) and start as U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).

Each layer computes the input projection of the whole sequence in one matmul and then loops
over time for the recurrent part. An LSTM layer without projection is one fused autograd node with
its own backward through time (``_lstm_layer_op.py``); the other layers' gradients come from the
differentiable ops they are built from.
"""
from __future__ import annotations

import math
import numbers
import warnings

from ... import _torch_api as _T
from .. import functional as NF
from .. import init
from ..parameter import Parameter
from ._lstm_cell_op import LstmCellBackward0
from ._lstm_layer_op import LstmLayerBackward0, LstmLayerNoBiasBackward0
from .module import Module

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _step(mode, gx, h, c, w_hh, b_hh, w_hr):
    """One time step given the input projection ``gx`` (N, gates*H): returns (h', c').

    For RNN and LSTM a caller may pass ``b_hh=None`` with ``b_hh`` already folded into ``gx``:
    the pre-activation is then one addmm node per step instead of a matmul and an add."""
    if mode != "GRU" and b_hh is None:
        pre = _T.addmm(gx, h, w_hh.t())
    else:
        gh = _T.addmm(b_hh, h, w_hh.t()) if b_hh is not None else _T.matmul(h, w_hh.t())
        pre = None if mode == "GRU" else gx + gh
    if mode == "LSTM":
        hc = LstmCellBackward0.apply(pre, c)  # one node for the gates, c' and h'
        hidden = hc.shape[1] // 2
        h, c = hc[:, :hidden], hc[:, hidden:]
        if w_hr is not None:
            h = _T.matmul(h, w_hr.t())
        return h, c
    if mode == "GRU":
        xr, xz, xn = gx.chunk(3, 1)
        hr, hz, hn = gh.chunk(3, 1)
        r = _T.sigmoid(xr + hr)
        z = _T.sigmoid(xz + hz)
        n = _T.tanh(xn + r * hn)  # b_hn sits inside the reset gate's product, as in PyTorch
        return (1 - z) * n + z * h, None
    return (_T.tanh(pre) if mode == "RNN_TANH" else _T.relu(pre)), None


def _input_projection(x, w_ih, b_ih):
    """(L, N, H_in) @ W_ih^T + b_ih for the whole sequence as one (L*N, H_in) matmul."""
    length, batch = x.shape[0], x.shape[1]
    flat = x.reshape(length * batch, x.shape[2])
    out = _T.addmm(b_ih, flat, w_ih.t()) if b_ih is not None else _T.matmul(flat, w_ih.t())
    return out.reshape(length, batch, out.shape[1])


def _run_direction(mode, x, h, c, weights, reverse):
    """Runs one layer in one direction over x (L, N, H_in): returns (outputs (L, N, H_out), h_n, c_n).
    (``amp`` wraps this function: autocast applies to the fused LSTM path and the per-step one.)"""
    if mode == "LSTM" and weights[4] is None:
        return _lstm_layer(x, h, c, weights, reverse)
    return _run_direction_steps(mode, x, h, c, weights, reverse)


def _run_direction_steps(mode, x, h, c, weights, reverse):
    """``_run_direction`` from per-step differentiable ops (GRU, RNN, projected LSTM, double backward)."""
    w_ih, w_hh, b_ih, b_hh, w_hr = weights
    if mode != "GRU" and b_hh is not None:  # GRU's b_hn sits inside the reset gate: it cannot fold
        b_ih, b_hh = b_ih + b_hh, None  # both biases added once per sequence, not once per step
    gx_all = _input_projection(x, w_ih, b_ih)
    if mode != "GRU" and b_hh is None:
        # W_hh^T made contiguous once per sequence: BLAS multiplies (N, H) by a row-major (H, 4H)
        # matrix markedly faster than by a transposed view, and every step reuses it.
        w_hh = w_hh.t().contiguous().t()
    length = x.shape[0]
    outs = [None] * length
    for t in (range(length - 1, -1, -1) if reverse else range(length)):
        h, c = _step(mode, gx_all[t], h, c, w_hh, b_hh, w_hr)
        outs[t] = h
    return _T.stack(outs), h, c


def _lstm_layer(x, h0, c0, weights, reverse):
    """One LSTM layer and direction (no projection) as one fused node: (outputs, h_n, c_n)."""
    w_ih, w_hh, b_ih, b_hh, _ = weights
    if b_ih is None:
        packed = LstmLayerNoBiasBackward0.apply(x, h0, c0, w_ih, w_hh, reverse=reverse)
    else:
        packed = LstmLayerBackward0.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=reverse)
    length = x.shape[0]
    return packed[:length], packed[length], packed[length + 1]


class RNNBase(Module):
    """Shared parameters, checks and layer loop of ``RNN``, ``LSTM`` and ``GRU``."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        if not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1 or isinstance(dropout, bool):
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an "
                             "element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}")
        if not isinstance(hidden_size, int) or isinstance(hidden_size, bool):
            raise TypeError(f"hidden_size should be of type int, got: {type(hidden_size).__name__}")
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        gate_size = _GATES[mode] * hidden_size
        real_hidden = proj_size if proj_size > 0 else hidden_size
        directions = 2 if bidirectional else 1
        self._flat_weights_names = []
        for layer in range(num_layers):
            for direction in range(directions):
                layer_input = input_size if layer == 0 else real_hidden * directions
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = [("weight_ih", (gate_size, layer_input)), ("weight_hh", (gate_size, real_hidden))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                if proj_size > 0:
                    shapes += [("weight_hr", (proj_size, hidden_size))]
                for name, shape in shapes:
                    setattr(self, name + suffix, Parameter(_T.empty(shape, dtype=dtype, device=device)))
                    self._flat_weights_names.append(name + suffix)
        self.reset_parameters()

    def reset_parameters(self):
        """Every weight and bias ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def flatten_parameters(self):
        """PyTorch compacts weights for cuDNN here; disttorch's weights are already separate arrays."""
        return None

    @property
    def all_weights(self):
        names = self._flat_weights_names
        per = len(names) // (self.num_layers * (2 if self.bidirectional else 1))
        return [[getattr(self, n) for n in names[i:i + per]] for i in range(0, len(names), per)]

    def extra_repr(self):
        s = "{input_size}, {hidden_size}"
        if self.proj_size != 0:
            s += ", proj_size={proj_size}"
        if self.num_layers != 1:
            s += ", num_layers={num_layers}"
        if self.bias is not True:
            s += ", bias={bias}"
        if self.batch_first is not False:
            s += ", batch_first={batch_first}"
        if self.dropout != 0:
            s += ", dropout={dropout}"
        if self.bidirectional is not False:
            s += ", bidirectional={bidirectional}"
        return s.format(**self.__dict__)

    def _weights(self, layer, direction):
        suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
        get = lambda name: getattr(self, name + suffix) if hasattr(self, name + suffix) else None  # noqa: E731
        return (get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"),
                get("weight_hr") if self.proj_size > 0 else None)

    def _check_input(self, input):
        name = "LSTM" if self.mode == "LSTM" else ("GRU" if self.mode == "GRU" else "RNN")
        if input.ndim not in (2, 3):
            raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D tensor instead")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                               f"got {input.shape[-1]}")

    def _check_hidden(self, hx, expected, batched, what="hidden"):
        if batched and hx.ndim != 3:
            raise RuntimeError(f"For batched 3-D input, hx should also be 3-D but got {hx.ndim}-D tensor")
        if not batched and hx.ndim != 2:
            raise RuntimeError(f"For unbatched 2-D input, hx should also be 2-D but got {hx.ndim}-D tensor")
        shape = tuple(hx.shape) if batched else (hx.shape[0], 1, hx.shape[1])
        if shape != expected:
            label = "hidden size" if what == "hidden" else "cell size"
            raise RuntimeError(f"Expected {label} {expected}, got {list(hx.shape if batched else shape)}")

    def _run(self, input, hx):
        """(output, h_n, c_n) for any mode; ``hx`` is None, a tensor, or (h0, c0)."""
        self._check_input(input)
        batched = input.ndim == 3
        x = input if batched else input.unsqueeze(1)
        if self.batch_first and batched:
            x = x.transpose(0, 1)
        batch = x.shape[1]
        directions = 2 if self.bidirectional else 1
        real_hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
        h_shape = (self.num_layers * directions, batch, real_hidden)
        c_shape = (self.num_layers * directions, batch, self.hidden_size)
        if hx is None:
            h0 = _T.zeros(h_shape, dtype=x.dtype, device=x.device)
            c0 = _T.zeros(c_shape, dtype=x.dtype, device=x.device) if self.mode == "LSTM" else None
        elif self.mode == "LSTM":
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise RuntimeError("LSTM expects hx to be a tuple (h_0, c_0)")
            self._check_hidden(hx[0], h_shape, batched)
            self._check_hidden(hx[1], c_shape, batched, "cell")
            h0, c0 = (hx[0], hx[1]) if batched else (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        else:
            self._check_hidden(hx, h_shape, batched)
            h0, c0 = (hx if batched else hx.unsqueeze(1)), None
        h_n, c_n = [], []
        layer_in = x
        for layer in range(self.num_layers):
            outs = []
            for direction in range(directions):
                k = layer * directions + direction
                out, h, c = _run_direction(self.mode, layer_in, h0[k], None if c0 is None else c0[k],
                                           self._weights(layer, direction), reverse=direction == 1)
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            layer_in = outs[0] if directions == 1 else _T.cat(outs, 2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_in = NF.dropout(layer_in, self.dropout, True)
        output = layer_in
        h_n = _T.stack(h_n)
        c_n = _T.stack(c_n) if self.mode == "LSTM" else None
        if self.batch_first and batched:
            output = output.transpose(0, 1)
        if not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else None
        return output, h_n, c_n


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (``nonlinearity='relu'``: relu).

    ``forward(input, hx=None)`` returns (output, h_n).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, 0, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        output, h_n, _ = self._run(input, hx)
        return output, h_n


class LSTM(RNNBase):
    """Long short-term memory (gates i, f, g, o); ``proj_size`` > 0 projects h_t to that size.

    ``forward(input, (h_0, c_0)=None)`` returns (output, (h_n, c_n)).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype)

    def forward(self, input, hx=None):
        output, h_n, c_n = self._run(input, hx)
        return output, (h_n, c_n)


class GRU(RNNBase):
    """Gated recurrent unit (gates r, z, n): h_t = (1 - z) * n + z * h_{t-1}.

    ``forward(input, hx=None)`` returns (output, h_n).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, 0,
                         device, dtype)

    def forward(self, input, hx=None):
        output, h_n, _ = self._run(input, hx)
        return output, h_n


# ---- cells ---------------------------------------------------------------------------------------------
class RNNCellBase(Module):
    """Parameters weight_ih (G*H, H_in), weight_hh (G*H, H), bias_ih, bias_hh (G*H,) of one step."""

    def __init__(self, input_size, hidden_size, bias, num_chunks, device=None, dtype=None):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.weight_ih = Parameter(_T.empty((num_chunks * hidden_size, input_size), dtype=dtype, device=device))
        self.weight_hh = Parameter(_T.empty((num_chunks * hidden_size, hidden_size), dtype=dtype, device=device))
        if bias:
            self.bias_ih = Parameter(_T.empty((num_chunks * hidden_size,), dtype=dtype, device=device))
            self.bias_hh = Parameter(_T.empty((num_chunks * hidden_size,), dtype=dtype, device=device))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -stdv, stdv)

    def extra_repr(self):
        s = "{input_size}, {hidden_size}"
        if self.bias is not True:
            s += ", bias={bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += ", nonlinearity={nonlinearity}"
        return s.format(**self.__dict__)

    def _prepare(self, input, hx, n_states):
        name = type(self).__name__
        if input.ndim not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.ndim}D instead")
        if input.shape[-1] != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.shape[-1]} expected {self.input_size}")
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        states = [] if hx is None else (list(hx) if n_states == 2 else [hx])
        for k, s in enumerate(states):
            if s.ndim not in (1, 2):
                raise ValueError(f"{name}: Expected hidden to be 1D or 2D, got {s.ndim}D instead")
            if s.shape[-1] != self.hidden_size:
                raise RuntimeError(f"hidden{k} has inconsistent hidden_size: got {s.shape[-1]}, expected {self.hidden_size}")
            states[k] = s if batched else s.unsqueeze(0)
        if hx is None:
            states = [_T.zeros((x.shape[0], self.hidden_size), dtype=x.dtype, device=x.device) for _ in range(n_states)]
        gx = _T.addmm(self.bias_ih, x, self.weight_ih.t()) if self.bias else _T.matmul(x, self.weight_ih.t())
        return gx, states, batched


class RNNCell(RNNCellBase):
    """One Elman step: input (N, H_in) or (H_in), hx (N, H) -> h' (N, H)."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        gx, (h,), batched = self._prepare(input, hx, 1)
        mode = "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"
        h, _ = _step(mode, gx, h, None, self.weight_hh, self.bias_hh, None)
        return h if batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    """One LSTM step: input (N, H_in), (h, c) (N, H) each -> (h', c')."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input, hx=None):
        gx, (h, c), batched = self._prepare(input, hx, 2)
        h, c = _step("LSTM", gx, h, c, self.weight_hh, self.bias_hh, None)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    """One GRU step: input (N, H_in), hx (N, H) -> h' (N, H)."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input, hx=None):
        gx, (h,), batched = self._prepare(input, hx, 1)
        h, _ = _step("GRU", gx, h, None, self.weight_hh, self.bias_hh, None)
        return h if batched else h.squeeze(0)
