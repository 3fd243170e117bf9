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
from ...ops._base import Op


def _sigmoid_(xp, x):
    """In-place sigmoid as 0.5 * tanh(x / 2) + 0.5: no overflow, one transcendental."""
    x *= 0.5
    xp.tanh(x, out=x)
    x *= 0.5
    x += 0.5


class LstmLayerBackward0(Op):
    save_inputs = (0, 1, 2, 3, 4, 5, 6)
    saves_output = True  # the hidden states: the recurrent weights' gradient needs them

    def forward(self, x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False):
        xp = array_module(x)
        length, batch, hidden = x.shape[0], x.shape[1], w_hh.shape[1]
        self.reverse = reverse
        # input projection of the whole sequence, both biases folded in; becomes the activations
        act = xp.matmul(x.reshape(length * batch, x.shape[2]), w_ih.T)
        if b_ih is not None:
            act += b_ih + b_hh
        act = act.reshape(length, batch, 4 * hidden)
        w_hh_t = xp.ascontiguousarray(w_hh.T)  # BLAS is faster on a row-major (H, 4H) operand
        packed = xp.empty((length + 2, batch, hidden), dtype=act.dtype)
        cells = xp.empty((length, batch, hidden), dtype=act.dtype)
        tanh_cells = xp.empty_like(cells)
        h, c = h0, c0
        for t in (range(length - 1, -1, -1) if reverse else range(length)):
            gates = act[t]
            gates += h @ w_hh_t
            _sigmoid_(xp, gates[:, :2 * hidden])
            xp.tanh(gates[:, 2 * hidden:3 * hidden], out=gates[:, 2 * hidden:3 * hidden])
            _sigmoid_(xp, gates[:, 3 * hidden:])
            c_new = cells[t]
            xp.multiply(gates[:, hidden:2 * hidden], c, out=c_new)
            c_new += gates[:, :hidden] * gates[:, 2 * hidden:3 * hidden]
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
        # d(activation)/d(pre-activation) for all steps at once: few large passes, not 4L small ones
        deriv = xp.empty_like(act)
        sig = act[:, :, :2 * hidden]
        xp.subtract(1, sig, out=deriv[:, :, :2 * hidden])
        deriv[:, :, :2 * hidden] *= sig
        g_act = act[:, :, 2 * hidden:3 * hidden]
        xp.multiply(g_act, g_act, out=deriv[:, :, 2 * hidden:3 * hidden])
        xp.subtract(1, deriv[:, :, 2 * hidden:3 * hidden], out=deriv[:, :, 2 * hidden:3 * hidden])
        o_act = act[:, :, 3 * hidden:]
        xp.subtract(1, o_act, out=deriv[:, :, 3 * hidden:])
        deriv[:, :, 3 * hidden:] *= o_act
        dgates = xp.empty_like(act)
        dh = grad[length].copy()
        dc = grad[length + 1].copy()
        order = range(length) if self.reverse else range(length - 1, -1, -1)
        for t in order:
            prev = (t + 1 if self.reverse else t - 1)
            c_prev = c0 if prev < 0 or prev >= length else cells[prev]
            a, d, dg, tc = act[t], deriv[t], dgates[t], tanh_cells[t]
            dh += grad[t]
            # dc += dh * o * (1 - tanh(c)^2)
            tmp = tc * tc
            xp.subtract(1, tmp, out=tmp)
            tmp *= a[:, 3 * hidden:]
            tmp *= dh
            dc += tmp
            xp.multiply(dh, tc, out=dg[:, 3 * hidden:])
            xp.multiply(dc, a[:, 2 * hidden:3 * hidden], out=dg[:, :hidden])
            xp.multiply(dc, c_prev, out=dg[:, hidden:2 * hidden])
            xp.multiply(dc, a[:, :hidden], out=dg[:, 2 * hidden:3 * hidden])
            dg *= d
            dc *= a[:, hidden:2 * hidden]
            dh = dg @ w_hh
        n = self.needs_input_grad
        flat = dgates.reshape(length * batch, 4 * hidden)
        gx = xp.matmul(flat, w_ih).reshape(x.shape) if n[0] else None
        gw_ih = xp.matmul(flat.T, x.reshape(length * batch, x.shape[2])) if n[3] else None
        gw_hh = None
        if n[4]:
            h_prev = xp.empty_like(cells)
            if self.reverse:
                h_prev[:length - 1] = packed[1:length]
                h_prev[length - 1] = h0
            else:
                h_prev[0] = h0
                h_prev[1:] = packed[:length - 1]
            gw_hh = xp.matmul(flat.T, h_prev.reshape(length * batch, hidden))
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
