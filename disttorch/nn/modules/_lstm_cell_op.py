"""The LSTM cell's pointwise part as one autograd node.

``LstmCellBackward0.apply(gates, c)``: gates (N, 4H) are the pre-activations (input projection +
hidden projection + biases) in PyTorch's order i, f, g, o; c (N, H) the previous cell state.
The output is (N, 2H): the new hidden state h' = o * tanh(c') in the first H columns and the new
cell state c' = f * c + i * g in the last H.

Built from separate ops the step is a chunk into four gates, three sigmoids, two tanh, three
products and a sum: a dozen nodes per time step, and each gate piece's backward writes a full
(N, 4H) zero array that the engine then adds up. One node computes the same gate gradients
straight into one (N, 4H) array. Under ``create_graph`` the backward is built from
differentiable ops instead, so higher-order gradients still work.
"""
from __future__ import annotations

from ..._backend import array_module
from ...ops._base import Op


def _sigmoid(xp, x):
    """1 / (1 + exp(-x)) as 0.5 * tanh(x / 2) + 0.5: no overflow for any x, within an ulp or two
    of the exp form, and about 5x faster on NumPy (one transcendental, no branch-select)."""
    out = xp.multiply(x, 0.5, dtype=x.dtype)
    xp.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


class LstmCellBackward0(Op):
    save_inputs = (0, 1)

    def forward(self, gates, c):
        xp = array_module(gates)
        hidden = c.shape[1]
        act = xp.empty_like(gates)
        act[:, :2 * hidden] = _sigmoid(xp, gates[:, :2 * hidden])
        act[:, 2 * hidden:3 * hidden] = xp.tanh(gates[:, 2 * hidden:3 * hidden])
        act[:, 3 * hidden:] = _sigmoid(xp, gates[:, 3 * hidden:])
        i, f, g, o = (act[:, k * hidden:(k + 1) * hidden] for k in range(4))
        out = xp.empty((gates.shape[0], 2 * hidden), dtype=gates.dtype)
        c_new = out[:, hidden:]
        xp.multiply(f, c, out=c_new)
        c_new += i * g
        tanh_c = xp.tanh(c_new)
        xp.multiply(o, tanh_c, out=out[:, :hidden])
        self.act, self.tanh_c = act, tanh_c  # what the backward needs, kept instead of recomputed
        return out

    def backward(self, grad, ns, gates, c):
        hidden = c.shape[1]
        if ns.graph:
            return self._graph_backward(grad, ns, gates, c, hidden)
        xp = array_module(grad)
        act, tanh_c = self.act, self.tanh_c
        i, f, g, o = (act[:, k * hidden:(k + 1) * hidden] for k in range(4))
        dh, dc_out = grad[:, :hidden], grad[:, hidden:]
        dc = dc_out + dh * o * (1 - tanh_c * tanh_c)
        dgates = xp.empty_like(act)
        xp.multiply(dc * g, i * (1 - i), out=dgates[:, :hidden])
        xp.multiply(dc * c, f * (1 - f), out=dgates[:, hidden:2 * hidden])
        xp.multiply(dc * i, 1 - g * g, out=dgates[:, 2 * hidden:3 * hidden])
        xp.multiply(dh * tanh_c, o * (1 - o), out=dgates[:, 3 * hidden:])
        return dgates, dc * f

    @staticmethod
    def _graph_backward(grad, ns, gates, c, hidden):
        i, f, g, o = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
        i, f, o, g = i.sigmoid(), f.sigmoid(), o.sigmoid(), g.tanh()
        tanh_c = (f * c + i * g).tanh()
        dh, dc_out = grad[:, :hidden], grad[:, hidden:]
        dc = dc_out + dh * o * (1 - tanh_c * tanh_c)
        dgates = ns.cat([dc * g * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - g * g),
                         dh * tanh_c * o * (1 - o)], 1)
        return dgates, dc * f
