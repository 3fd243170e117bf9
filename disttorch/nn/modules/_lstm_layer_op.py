"""One LSTM layer (one direction, the whole sequence) as one autograd node, with its own
backward-through-time loop, as PyTorch's fused CPU and cuDNN kernels do.

``LstmLayerBackward0.apply(x, h0, c0, w_ih, w_hh[, b_ih, b_hh], reverse=False)``:
x (L, N, H_in), h0 and c0 (N, H), weights in PyTorch's layout and gate order i, f, g, o. The
output packs the results into one (L + 2, N, H) array: rows 0..L-1 the hidden state at each
time step (the layer's output), row L the final hidden state h_n and row L + 1 the final cell
state c_n (callers slice it; an autograd node has one output).

Why one node: built from per-step ops, every step's slice ``gates[t]`` of the input projection
has a backward that writes a zero array the size of the whole projection, and the engine adds
the L of them up (a fifth of a language model's training step). Here the backward writes each
step's gate gradients into one (L, N, 4H) buffer, and the weight and input gradients come out of
three matmuls over the whole sequence. Under ``create_graph`` the backward is rebuilt from
differentiable per-step ops instead, so higher-order gradients still work.
"""
from __future__ import annotations

from ..._backend import array_module
from ... import _gemm
from ...ops._base import Op


def _gate_scales(xp, hidden, dtype):
    """(scale, shift) per gate column: sigmoid(z) = 0.5 * tanh(z / 2) + 0.5 for i, f, o and
    tanh(z) for g, so one tanh over all four gates does, given pre-activations halved for i, f, o."""
    scale = xp.full(4 * hidden, 0.5, dtype=dtype)
    scale[2 * hidden:3 * hidden] = 1
    shift = scale.copy()
    shift[2 * hidden:3 * hidden] = 0
    return scale, shift


class LstmLayerBackward0(Op):
    save_inputs = (0, 1, 2, 3, 4, 5, 6)
    saves_output = True  # the hidden states: the recurrent weights' gradient needs them

    def forward(self, x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False):
        xp = array_module(x)
        length, batch, hidden = x.shape[0], x.shape[1], w_hh.shape[1]
        self.reverse = reverse
        scale, shift = _gate_scales(xp, hidden, x.dtype)
        # Weights and biases with the i, f, o rows halved (exact: a power of two), so that the
        # projections give tanh's arguments directly; one tanh and one multiply-add per step then
        # activate all four gates of the contiguous (N, 4H) block.
        half_w_ih = w_ih * scale[:, None]
        act = _gemm.matmul(x.reshape(length * batch, x.shape[2]), half_w_ih.T)
        if b_ih is not None:
            act += (b_ih + b_hh) * scale
        act = act.reshape(length, batch, 4 * hidden)
        half_w_hh_t = xp.ascontiguousarray((w_hh * scale[:, None]).T)  # row-major (H, 4H): faster BLAS
        packed = xp.empty((length + 2, batch, hidden), dtype=act.dtype)
        cells = xp.empty((length, batch, hidden), dtype=act.dtype)
        tanh_cells = xp.empty_like(cells)
        recurrent = xp.empty((batch, 4 * hidden), dtype=act.dtype)
        input_gate = xp.empty((batch, hidden), dtype=act.dtype)
        h, c = h0, c0
        for t in (range(length - 1, -1, -1) if reverse else range(length)):
            gates = act[t]
            _gemm.matmul(h, half_w_hh_t, out=recurrent)
            gates += recurrent
            xp.tanh(gates, out=gates)
            gates *= scale
            gates += shift                                   # i, f, g, o activated
            c_new = cells[t]
            xp.multiply(gates[:, hidden:2 * hidden], c, out=c_new)
            xp.multiply(gates[:, :hidden], gates[:, 2 * hidden:3 * hidden], out=input_gate)
            c_new += input_gate
            xp.tanh(c_new, out=tanh_cells[t])
            xp.multiply(gates[:, 3 * hidden:], tanh_cells[t], out=packed[t])
            h, c = packed[t], c_new
        packed[length] = h
        packed[length + 1] = c
        self.act, self.cells, self.tanh_cells = act, cells, tanh_cells
        return packed

    def backward(self, grad, ns, x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None):
        if ns.graph:
            return self._graph_backward(grad, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        xp = array_module(grad)
        act, cells, tanh_cells = self.act, self.cells, self.tanh_cells
        length, batch, hidden = cells.shape
        packed = self.out
        f, o = act[:, :, hidden:2 * hidden], act[:, :, 3 * hidden:]
        # What does not depend on the incoming gradients, for all steps in a few large passes:
        # each gate's local derivative, (1 - a) * (a + v) with v = 0 for the sigmoid gates
        # (s * (1 - s)) and v = 1 for g (1 - tanh^2), over the contiguous (L, N, 4H) block; and
        # k = o * (1 - tanh(c)^2), the factor by which dh reaches dc.
        _, shift = _gate_scales(xp, hidden, act.dtype)
        deriv = xp.subtract(1, act)
        deriv *= act + (1 - 2 * shift)  # 1 - 2 * shift: 0 for i, f, o and 1 for g
        k = tanh_cells * tanh_cells
        xp.subtract(1, k, out=k)
        k *= o
        dgates = xp.empty_like(act)
        dh = grad[length].copy()
        dc = grad[length + 1].copy()
        tmp = xp.empty_like(dc)
        for t in (range(length) if self.reverse else range(length - 1, -1, -1)):
            prev = t + 1 if self.reverse else t - 1
            c_prev = c0 if prev < 0 or prev >= length else cells[prev]
            a, dg = act[t], dgates[t]
            dh += grad[t]
            xp.multiply(dh, k[t], out=tmp)
            dc += tmp
            xp.multiply(dc, a[:, 2 * hidden:3 * hidden], out=dg[:, :hidden])
            xp.multiply(dc, c_prev, out=dg[:, hidden:2 * hidden])
            xp.multiply(dc, a[:, :hidden], out=dg[:, 2 * hidden:3 * hidden])
            xp.multiply(dh, tanh_cells[t], out=dg[:, 3 * hidden:])
            dg *= deriv[t]
            dc *= f[t]
            dh = _gemm.matmul(dg, w_hh)
        n = self.needs_input_grad
        flat = dgates.reshape(length * batch, 4 * hidden)
        gx = _gemm.matmul(flat, w_ih).reshape(x.shape) if n[0] else None
        gw_ih = _gemm.matmul(flat.T, x.reshape(length * batch, x.shape[2])) if n[3] else None
        gw_hh = None
        if n[4]:
            h_prev = xp.empty_like(cells)
            if self.reverse:
                h_prev[:length - 1] = packed[1:length]
                h_prev[length - 1] = h0
            else:
                h_prev[0] = h0
                h_prev[1:] = packed[:length - 1]
            gw_hh = _gemm.matmul(flat.T, h_prev.reshape(length * batch, hidden))
        grads = [gx, dh if n[1] else None, dc if n[2] else None, gw_ih, gw_hh]
        if b_ih is not None:
            gb = flat.sum(axis=0) if (n[5] or n[6]) else None
            grads += [gb if n[5] else None, (gb.copy() if n[5] else gb) if n[6] else None]
        return tuple(grads)

    def _graph_backward(self, grad, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        """Double-backward path: the same layer from differentiable per-step ops, differentiated
        with ``create_graph`` (grad and the saved inputs are Tensors here)."""
        from ...autograd import grad as autograd_grad
        from .rnn import _run_direction_steps
        inputs = [x, h0, c0, w_ih, w_hh] + ([b_ih, b_hh] if b_ih is not None else [])
        out, h, c = _run_direction_steps("LSTM", x, h0, c0, (w_ih, w_hh, b_ih, b_hh, None), self.reverse)
        from ... import _torch_api as _T
        packed = _T.cat([out, h.unsqueeze(0), c.unsqueeze(0)], 0)
        wanted = [t for t, need in zip(inputs, self.needs_input_grad) if need]
        found = iter(autograd_grad(packed, wanted, grad, create_graph=True, allow_unused=True))
        return tuple(next(found) if need else None for need in self.needs_input_grad)


class LstmLayerNoBiasBackward0(LstmLayerBackward0):
    """The same layer for ``bias=False`` (inputs x, h0, c0, w_ih, w_hh)."""

    save_inputs = (0, 1, 2, 3, 4)
