"""Fused recurrent layers for CPU: nn.RNN/LSTM/GRU with a compiled time loop and a hand-written backward.

On CPU, autograd through nn.GRU/RNN (and nn.LSTM where oneDNN is off or the
dtype is not float32) replays every time step's small operations backwards
and multiplies out the weight gradients one step at a time. These layers keep
nn's parameters (same names, same layout, same gate order, so state_dicts
load either way) and run each layer as one autograd.Function:

- forward: the input projection of every step in one matrix product, then
  per step one product into a preallocated buffer and the gate arithmetic
  (the LSTM's compiled loop forms a dense input's projection step by step
  instead, while the step's rows are in cache);
- backward: the recurrence in reverse computes only the gate gradients (and,
  in the LSTM's compiled loop, the input's and the bias gradient, step by
  step), then each weight gradient is ONE product over all B*T rows (the
  LSTM's two together) and each bias gradient one sum.

The per-step loops run in C++ (fused_loop.cpp, compiled once per machine by
fused_loop.py: one GEMM micro-kernel call and one pass of plain loops per
step); where it cannot be compiled, PythonLoop runs the same arithmetic with
torch ops, paying tens of microseconds of dispatch per step.

tanh(a) is computed as 2*sigmoid(2a) - 1 (torch's CPU tanh is several times
slower than its sigmoid): the tanh rows of the weights are doubled (an exact
scaling) so one sigmoid covers every gate. The results agree with nn's within
float32 rounding, with either loop (tests/test_fused.py).

Under CPU autocast to bfloat16 (`--precision bf16`) every matrix product
of a layer takes bfloat16 operands (float32 accumulation inside the GEMM),
while the weights stay float32 masters, and the gate arithmetic, the states
and every gradient stay float32: the bfloat16 copies of W_ih and W_hh are made
once per forward and carry the mode into the loops (`product`). Those
products run in the Python loop (the compiled one is float32 only).

The modules dispatch at forward time: the fused Function for a padded batch
where `kernel` allows it, nn's own kernel otherwise (packed sequences, CUDA
under "auto"); see FusedRecurrent for what "auto" picks, from
scripts/bench_kernel.py's measurements.
"""

from __future__ import annotations

import math
import weakref
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from seqtrain.models.fused_loop import compiled_loop

KERNELS = ("auto", "torch", "fused")


class Workspace:
    """Large buffers kept from one training step to the next, up to a fixed number of bytes.

    A freshly allocated buffer of many MiB comes back from the OS page by page
    on first touch, and on a virtual machine each 4 KiB page fault costs
    microseconds: as much as the arithmetic done on it. Each Function takes its
    buffers here; they come back when the autograd graph that holds them is
    freed (temporaries of backward at its end). Buffers are kept flat and
    handed out for any shape that fits in at most twice its size, so batches of
    varying length reuse them; what would exceed `limit_bytes` is let go, so the
    memory held stays bounded however many shapes a run sees.
    """

    def __init__(self, limit_bytes: int = 512 * 2**20):
        self.limit_bytes = limit_bytes
        self.held_bytes = 0
        self.free: dict[tuple, list[torch.Tensor]] = {}

    def empty(self, like: torch.Tensor, *shape: int) -> torch.Tensor:
        size = math.prod(shape)
        pool = self.free.get((like.dtype, like.device), [])
        fits = [i for i, flat in enumerate(pool) if size <= flat.numel() <= 2 * size]
        if fits:
            flat = pool.pop(min(fits, key=lambda i: pool[i].numel()))
            self.held_bytes -= flat.numel() * flat.element_size()
        else:
            flat = like.new_empty(size)
        return flat[:size].view(shape)

    def release(self, *buffers: torch.Tensor) -> None:
        for buffer in buffers:
            flat = buffer._base if buffer._base is not None else buffer.view(-1)
            if flat.is_inference():  # made under torch.inference_mode(): unwritable outside it
                continue
            nbytes = flat.numel() * flat.element_size()
            if self.held_bytes + nbytes <= self.limit_bytes:
                self.free.setdefault((flat.dtype, flat.device), []).append(flat)
                self.held_bytes += nbytes


WORKSPACE = Workspace()


def product(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None, bias: torch.Tensor | None = None,
            add: bool = False) -> torch.Tensor:
    """out = a @ b (+ bias), or out += a @ b with `add`; a new tensor without `out`.

    With b in a narrower dtype than a (bfloat16 weights under `--precision bf16`), a is rounded to it and the
    product, accumulated in float32 inside the GEMM, lands in a's dtype: the loops keep float32 states throughout.
    """
    if a.dtype == b.dtype:
        if out is None:
            return a @ b if bias is None else torch.addmm(bias, a, b)
        if add:
            return out.addmm_(a, b)
        return torch.mm(a, b, out=out) if bias is None else torch.addmm(bias, a, b, out=out)
    narrow = torch.mm(a.to(b.dtype), b)
    if out is None:
        out = narrow.to(a.dtype)
    elif add:
        out.add_(narrow)
    else:
        out.copy_(narrow)
    return out if bias is None else out.add_(bias)


class DenseInputs:
    """A layer's input [B, T, I] as [T*B, I] rows in time order (a copy), so every step's slice of a product is contiguous.

    The copy goes into `into` [T, B, I] where given (the LSTM's columns beside its states), else a buffer of its own.
    """

    def __init__(self, x: torch.Tensor, into: torch.Tensor | None = None):
        batch, steps, size = x.shape
        own = into is None
        into = WORKSPACE.empty(x, steps, batch, size) if own else into
        into.copy_(x.transpose(0, 1))
        self.rows = into.view(steps * batch, size)
        self.batch = batch
        self.buffers = (self.rows,) if own else ()

    def project(self, w: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> None:
        """out [T*B, G*H] = rows @ w.T + b."""
        loop(self.rows, w).matmul(self.rows, w.t(), b, out)

    def per_step(self, w: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """w: nothing is computed here, the loop forms each step's input product with the state's, in cache."""
        return w

    def input_grad(self, like: torch.Tensor, needs: Needs) -> torch.Tensor | None:
        """The buffer [B, T, I] the loop writes dx into step by step, where it is needed."""
        steps, size = self.rows.shape[0] // self.batch, self.rows.shape[1]
        return like.new_empty(self.batch, steps, size) if needs.input else None

    def grads(self, grads: torch.Tensor, w_ih: torch.Tensor, needs: Needs, dx: torch.Tensor | None = None,
              dw_ih: torch.Tensor | None = None):
        """(dx [B, T, I], dW_ih, db_ih) from the input product's gate gradients [T*B, G*H]: each ONE product (or
        sum) over all rows; dx and dW_ih as given where the layer has formed them."""
        if needs.input and dx is None:
            dx = grads.new_empty(grads.shape[0], w_ih.shape[1])
            loop(grads, w_ih).matmul(grads, w_ih, None, dx)
            dx = dx.view(-1, self.batch, w_ih.shape[1]).transpose(0, 1)
        if needs.w_ih and dw_ih is None:
            dw_ih = product(grads.t(), self.rows.to(w_ih.dtype))
        return dx, dw_ih, _row_sums(grads, needs.b_ih or needs.b_hh)


class TokenInputs:
    """A layer's input as token ids [B, T] into an embedding table [V, I]: nn.Embedding folded into the input product.

    A batch of text repeats most of its words, so the product is taken once per
    distinct token and its rows gathered in time order; backward sums the gate
    gradients per distinct token, so dW_ih and the table's gradient are products
    over those few rows, and no [B, T, I] input or gradient is ever formed.
    Equal to nn.Embedding (without max_norm) followed by the dense input, within float rounding.
    """

    def __init__(self, table: torch.Tensor, tokens: torch.Tensor, padding_idx: int | None):
        self.table, self.padding_idx = table, padding_idx
        self.distinct, self.index = _distinct(tokens.t().reshape(-1), table.shape[0])
        self.rows = table.index_select(0, self.distinct)
        self.buffers = ()

    def project(self, w: torch.Tensor, b: torch.Tensor | None, out: torch.Tensor) -> None:
        products = product(self.rows, w.t(), bias=b)
        torch.index_select(products, 0, self.index, out=out)

    def per_step(self, w: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """No columns of w for the loop: the product (without bias) is taken per distinct token, into out
        [T*B, G*H], here."""
        self.project(w, None, out)
        return w[:, :0]

    def input_grad(self, like: torch.Tensor, needs: Needs) -> None:
        """None: the table's gradient comes from the per-token sums, after the loop."""
        return None

    def grads(self, grads: torch.Tensor, w_ih: torch.Tensor, needs: Needs, dx: None = None, dw_ih: None = None):
        """(d table [V, I], dW_ih, db_ih) through the per-token sums of the gate gradients [T*B, G*H]."""
        per_token = grads.new_zeros(self.distinct.numel(), grads.shape[1])
        loop(grads).index_add_rows(grads, self.index, per_token)
        d_table = None
        if needs.input:
            d_table = grads.new_zeros(self.table.shape).index_copy_(0, self.distinct, product(per_token, w_ih))
            if self.padding_idx is not None:
                d_table[self.padding_idx] = 0  # nn.Embedding never trains its padding row
        dw_ih = product(per_token.t(), self.rows.to(w_ih.dtype)) if needs.w_ih else None
        return d_table, dw_ih, _row_sums(per_token, needs.b_ih or needs.b_hh)


def _distinct(tokens: torch.Tensor, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the distinct ids in increasing order, each token's position among them), in O(tokens + vocab), no sort."""
    seen = torch.zeros(vocab, dtype=torch.long, device=tokens.device)
    seen[tokens] = 1
    distinct = seen.nonzero().squeeze(1)
    return distinct, (seen.cumsum(0) - 1)[tokens]


def _inputs(x: torch.Tensor, tokens: torch.Tensor | None, padding_idx: int | None,
            into: torch.Tensor | None = None) -> DenseInputs | TokenInputs:
    """The rows a layer's input product reads: x itself (copied into `into` where given), or with `tokens` the rows
    of the embedding table x."""
    return DenseInputs(x, into) if tokens is None else TokenInputs(x, tokens, padding_idx)


def _finish_forward(ctx, w_ih: torch.Tensor, w_hh: torch.Tensor, inputs, buffers: tuple, h: torch.Tensor):
    """Keep what backward needs (buffers go back to the workspace when the graph is freed); (out [B,T,H], h_n).

    The outputs are copies: a view of a reused buffer would change under the caller's feet (clone, because with
    one step or one sequence the transposed view is already contiguous and .contiguous() would return it).
    """
    ctx.save_for_backward(w_ih, w_hh)
    ctx.inputs, ctx.saved = inputs, buffers
    weakref.finalize(ctx, WORKSPACE.release, *inputs.buffers, *buffers)
    ctx.set_materialize_grads(False)
    return h[1:].transpose(0, 1).clone(memory_format=torch.contiguous_format), h[-1].clone()


def _doubled(t: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
    """A copy of `t` with rows start:stop times 2 (exact): those gates' tanh(a) becomes 2*sigmoid(2a) - 1."""
    t = t.clone()
    t[start:stop] *= 2
    return t


def _tanh_from_sigmoid_(s: torch.Tensor, minus_one: torch.Tensor) -> torch.Tensor:
    """In place: sigmoid(2a) -> tanh(a)."""
    return torch.add(minus_one, s, alpha=2, out=s)


def _one_minus_square(t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """1 - t^2, tanh's derivative, in one pass."""
    return torch.addcmul(t.new_ones(()), t, t, value=-1, out=out)


def _sigmoid_grad(s: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """s * (1 - s), sigmoid's derivative, in one pass."""
    return torch.addcmul(s, s, s, value=-1, out=out)


def _hidden_grads(dout: torch.Tensor | None, dh_n: torch.Tensor | None, h: torch.Tensor) -> torch.Tensor:
    """[T, B, H] gradient reaching each step's output from above; the recurrence adds its own part in place."""
    dh = WORKSPACE.empty(h, *h[1:].shape)
    if dout is not None:
        dh.copy_(dout.transpose(0, 1))
    else:
        dh.zero_()
    if dh_n is not None:
        dh[-1] += dh_n
    return dh


class Needs(NamedTuple):
    """Which of a layer Function's inputs want a gradient."""

    input: bool
    w_ih: bool
    w_hh: bool
    b_ih: bool
    b_hh: bool


def _needs(ctx) -> Needs:
    """The input's and the four weights' flags; the weights follow the input and the initial states."""
    flags, first = ctx.needs_input_grad, ctx.first_weight
    return Needs(flags[0], *flags[first : first + 4])


def _row_sums(grads: torch.Tensor, needed: bool) -> torch.Tensor | None:
    """A bias gradient: the gate gradients [T, B, G*H] summed over all B*T rows."""
    return grads.view(-1, grads.shape[-1]).sum(0) if needed else None


def _recurrent_weight_grad(ctx, grads: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor) -> torch.Tensor | None:
    """dW_hh as ONE product over all B*T rows of the gate gradients [T, B, G*H] and the states before them (in
    w_hh's precision)."""
    if not _needs(ctx).w_hh:
        return None
    rows = grads.view(-1, grads.shape[-1])
    return product(rows.t(), h[:-1].reshape(rows.shape[0], -1).to(w_hh.dtype))


def _input_grads(ctx, grads: torch.Tensor, inputs: DenseInputs | TokenInputs, w_ih: torch.Tensor):
    """dx (or the embedding table's gradient), dW_ih and the bias sums from the input side's gate gradients [T, B, G*H]."""
    return inputs.grads(grads.view(-1, grads.shape[-1]), w_ih, _needs(ctx))


def _shared_gate_grads(ctx, grads: torch.Tensor, inputs: DenseInputs | TokenInputs, h: torch.Tensor, w_ih: torch.Tensor,
                       w_hh: torch.Tensor):
    """(dx, dW_ih, dW_hh, db_ih, db_hh) where both products see the same gate gradients (the RNN's)."""
    dx, dw_ih, db = _input_grads(ctx, grads, inputs, w_ih)
    return dx, dw_ih, _recurrent_weight_grad(ctx, grads, h, w_hh), db, (db.clone() if db is not None else None)


class PythonLoop:
    """The per-step loops in Python: fused_loop.cpp's interface and numbers, for where it cannot be compiled.

    Each step is one addmm into a preallocated buffer and a few in-place ops;
    backward forms every per-step factor that does not depend on the incoming
    gradient for all steps at once beforehand, so its loop only multiplies them in.
    """

    @staticmethod
    def matmul(a, b, bias, out) -> None:
        """out = a @ b (+ bias in every row)."""
        product(a, b, out, bias)

    @staticmethod
    def index_add_rows(rows, index, out) -> None:
        """out[index[r]] += rows[r]."""
        out.index_add_(0, index, rows)

    @staticmethod
    def lstm_forward(gates, xh, cc, tanh_c, w_in, bias) -> None:
        hidden, add = cc.shape[2], xh.shape[2] == cc.shape[2]  # xh of states alone: gates holds the input's part
        minus_one = cc.new_tensor(-1.0)
        i, f, gg, o = (gates[..., k * hidden : (k + 1) * hidden].unbind(0) for k in range(4))
        xhs, hs, ccs, tcs = xh.unbind(0), xh[..., -hidden:].unbind(0), cc.unbind(0), tanh_c.unbind(0)
        for t, a in enumerate(gates.unbind(0)):
            product(xhs[t], w_in, a, add=add).add_(bias).sigmoid_()
            _tanh_from_sigmoid_(gg[t], minus_one)
            c = torch.mul(f[t], ccs[t], out=ccs[t + 1]).addcmul_(i[t], gg[t], value=2)
            torch.mul(o[t], _tanh_from_sigmoid_(torch.sigmoid(c, out=tcs[t]), minus_one), out=hs[t + 1])

    @staticmethod
    def lstm_backward(acts, cc, tanh_c, dh_all, dc, grads, w_hh, w_ih=None, dx=None, db=None) -> torch.Tensor:
        steps, batch, hidden = tanh_c.shape
        i, f, g, o = acts.split(hidden, 2)
        # dgates = [dc*g*i', dc*c_prev*f', dc*i*g', dh*tanh(c)*o'] and dc = dc_next*f + dh*o*tanh'(c)
        gi, gf, gg, go = grads.split(hidden, 2)
        _sigmoid_grad(i, out=gi).mul_(g)
        _sigmoid_grad(f, out=gf).mul_(cc[:-1]).mul_(0.5)
        _one_minus_square(g, out=gg).mul_(i)
        _sigmoid_grad(o, out=go).mul_(tanh_c)
        dc_from_dh = _one_minus_square(tanh_c, out=WORKSPACE.empty(tanh_c, *tanh_c.shape)).mul_(o)
        dh = dh_all.unbind(0)
        rows, forget, to_dc = grads.unbind(0), f.unbind(0), dc_from_dh.unbind(0)
        scale = dc.new_empty(batch, 4 * hidden)  # [dc, dc, dc, dh]: one plain product beats a broadcast one
        for t in range(steps - 1, -1, -1):
            dc.addcmul_(dh[t], to_dc[t])
            rows[t].mul_(torch.cat((dc, dc, dc, dh[t]), 1, out=scale))
            dc.mul_(forget[t])
            dh_prev = product(rows[t], w_hh, dh[t - 1], add=True) if t else product(rows[t], w_hh)
        WORKSPACE.release(dc_from_dh)
        rows = grads.view(-1, grads.shape[2])
        if dx is not None:  # in Python, all steps' at once
            dx.transpose(0, 1).copy_(product(rows, w_ih).view(steps, batch, -1))
        if db is not None:
            torch.sum(rows, 0, out=db)
        return dh_prev

    @staticmethod
    def gru_forward(gates, h, rec, w_rec, b_hh) -> None:
        hidden = h.shape[2]
        minus_one = h.new_tensor(-1.0)
        r, z, cand = (gates[..., k * hidden : (k + 1) * hidden].unbind(0) for k in range(3))
        rz, rec_rz, rec_n = gates[..., : 2 * hidden].unbind(0), rec[..., : 2 * hidden].unbind(0), rec[..., 2 * hidden :].unbind(0)
        hs, recs = h.unbind(0), rec.unbind(0)
        for t in range(gates.shape[0]):
            product(hs[t], w_rec, recs[t], b_hh)
            rz[t].add_(rec_rz[t]).sigmoid_()
            _tanh_from_sigmoid_(cand[t].addcmul_(r[t], rec_n[t], value=2).sigmoid_(), minus_one)
            torch.lerp(cand[t], hs[t], z[t], out=hs[t + 1])

    @staticmethod
    def gru_backward(acts, h, rec, dh_all, grads, w_hh) -> torch.Tensor:
        steps, batch, hidden = dh_all.shape
        r, z, n = acts.split(hidden, 2)
        rec_n, h_minus_n = rec[..., 2 * hidden :], rec[..., :hidden]  # h - n reuses a no longer needed slice
        # With dh the gradient at h_t and A = (1 - z)(1 - n^2), the recurrent product's gate gradients are
        # dh * [A*hn*r', (h_prev - n)*z', A*r] and the input product's the same with dh*A for n
        a = _one_minus_square(n, out=WORKSPACE.empty(n, *n.shape))
        a.addcmul_(z, a, value=-1)
        g_r, g_z, g_n = grads.split(hidden, 2)
        _sigmoid_grad(r, out=g_r).mul_(rec_n).mul_(a)
        _sigmoid_grad(z, out=g_z).mul_(torch.sub(h[:-1], n, out=h_minus_n))
        torch.mul(a, r, out=g_n)
        rows, keep, dh = grads.unbind(0), z.unbind(0), dh_all.unbind(0)
        scale = dh_all.new_empty(batch, 3 * hidden)  # [dh, dh, dh]: one plain product beats a broadcast one
        for t in range(steps - 1, -1, -1):
            rows[t].mul_(torch.cat((dh[t], dh[t], dh[t]), 1, out=scale))
            if t:
                product(rows[t], w_hh, dh[t - 1].addcmul_(dh[t], keep[t]), add=True)
            else:
                dh_prev = product(rows[t], w_hh, dh[t] * keep[t], add=True)
        dh_all.mul_(a)  # once used: the gradient the input product sees for n
        WORKSPACE.release(a)
        return dh_prev

    @staticmethod
    def rnn_forward(h, w_rec) -> None:
        minus_one = h.new_tensor(-1.0)
        hs = h.unbind(0)
        for t in range(h.shape[0] - 1):
            _tanh_from_sigmoid_(product(hs[t], w_rec, hs[t + 1], add=True).sigmoid_(), minus_one)

    @staticmethod
    def rnn_backward(h, dh_all, grads, w_hh) -> torch.Tensor:
        _one_minus_square(h[1:], out=grads)  # tanh', times dh step by step below
        rows, dh = grads.unbind(0), dh_all.unbind(0)
        for t in range(dh_all.shape[0] - 1, -1, -1):
            rows[t].mul_(dh[t])
            dh_prev = product(rows[t], w_hh, dh[t - 1], add=True) if t else product(rows[t], w_hh)
        return dh_prev


def loop(like: torch.Tensor, weight: torch.Tensor | None = None):
    """The per-step loops for tensors like `like` and products with `weight`: the compiled ones (CPU only, one
    dtype; built on first use) where they load, else PythonLoop."""
    same = weight is None or weight.dtype == like.dtype
    compiled = compiled_loop() if like.device.type == "cpu" and same else None
    return PythonLoop if compiled is None else compiled


def _product_weights(narrow: torch.dtype | None, *weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The weights a layer's products read: copies in `narrow` (bfloat16) where given, the float32 masters otherwise."""
    return weights if narrow is None else tuple(w.to(narrow) for w in weights)


def autocast_products(like: torch.Tensor) -> torch.dtype | None:
    """bfloat16 where CPU autocast to it is on (`--precision bf16`) for a layer on `like`'s CPU, else None."""
    cpu = like.device.type == "cpu" and torch.is_autocast_enabled("cpu")
    return torch.bfloat16 if cpu and torch.get_autocast_dtype("cpu") == torch.bfloat16 else None


class LSTMFunction(torch.autograd.Function):
    """One LSTM layer: (x [B,T,I], h0 [B,H], c0 [B,H], W_ih, W_hh, b_ih, b_hh) -> (out [B,T,H], h_n, c_n).

    With `tokens` [B, T], x is an embedding table [V, I] and the input is its rows for the tokens (TokenInputs).
    """

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, tokens=None, padding_idx=None, narrow=None):
        w_ih, w_hh = _product_weights(narrow, w_ih, w_hh)
        batch, steps = h0.shape[0], (x if tokens is None else tokens).shape[1]
        hidden = w_hh.shape[1]
        g = (2 * hidden, 3 * hidden)  # PyTorch's gate order i, f, g, o: only g is a tanh
        ctx.first_weight = 3
        width = 0 if tokens is not None else x.shape[2]  # the input's columns in each step's product
        xh = WORKSPACE.empty(x, steps + 1, batch, width + hidden)  # [x_t, h_t]: ONE product per step reads both
        inputs = _inputs(x, tokens, padding_idx, xh[:steps, :, :width])
        gates = WORKSPACE.empty(x, steps, batch, 4 * hidden)  # pre-activations, then activations i, f, g, o
        front = inputs.per_step(_doubled(w_ih, *g), gates.view(steps * batch, -1))
        h = xh[..., width:]
        cc = WORKSPACE.empty(x, steps + 1, batch, hidden)  # 2c: sigmoid(2c) gives tanh(c) = 2*sigmoid(2c) - 1
        tanh_c = WORKSPACE.empty(x, steps, batch, hidden)
        h[0] = h0
        torch.mul(c0, 2, out=cc[0])
        w_in = torch.cat((front, _doubled(w_hh, *g)), 1).t()
        loop(x, w_in).lstm_forward(gates, xh, cc, tanh_c, w_in, _doubled(b_ih + b_hh, *g))
        return *_finish_forward(ctx, w_ih, w_hh, inputs, (xh, cc, gates, tanh_c), h), cc[steps] * 0.5

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dh_n, dc_n):
        w_ih, w_hh = ctx.saved_tensors
        xh, cc, acts, tanh_c = ctx.saved
        width = xh.shape[2] - w_hh.shape[1]
        grads = WORKSPACE.empty(acts, *acts.shape)
        dh_all = _hidden_grads(dout, dh_n, xh[..., width:])
        dc = dc_n.clone(memory_format=torch.contiguous_format) if dc_n is not None else cc.new_zeros(cc.shape[1:])
        needs = _needs(ctx)
        dx = ctx.inputs.input_grad(cc, needs)
        db = cc.new_empty(acts.shape[2]) if needs.b_ih or needs.b_hh else None  # the loop writes it
        dh_prev = loop(cc, w_hh).lstm_backward(acts, cc, tanh_c, dh_all, dc, grads, w_hh, w_ih, dx, db)
        rows = grads.view(-1, grads.shape[-1])
        # dW_ih and dW_hh as ONE product over all B*T rows of the gate gradients and each step's [x_t, h_t]
        dw = product(rows.t(), xh[:-1].view(rows.shape[0], -1).to(w_hh.dtype)) if needs.w_ih or needs.w_hh else None
        dw_ih = dw[:, :width] if needs.w_ih and width else None
        # the loop has summed the bias gradient
        dx, dw_ih, _ = ctx.inputs.grads(rows, w_ih, needs._replace(b_ih=False, b_hh=False), dx, dw_ih)
        WORKSPACE.release(grads, dh_all)
        dw_hh = dw[:, width:] if needs.w_hh else None
        return dx, dh_prev, dc, dw_ih, dw_hh, db, (db.clone() if db is not None else None), None, None, None


class GRUFunction(torch.autograd.Function):
    """One GRU layer: (x [B,T,I], h0 [B,H], W_ih, W_hh, b_ih, b_hh) -> (out [B,T,H], h_n).

    PyTorch's GRU: r, z = sigmoid(x W_ir,z + h W_hr,z + b), n = tanh(x W_in + b_in + r * (h W_hn + b_hn)),
    h' = (1 - z) * n + z * h.
    """

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, tokens=None, padding_idx=None, narrow=None):
        w_ih, w_hh = _product_weights(narrow, w_ih, w_hh)
        batch, steps = h0.shape[0], (x if tokens is None else tokens).shape[1]
        hidden = w_hh.shape[1]
        n = (2 * hidden, 3 * hidden)  # only n is a tanh: its input rows are doubled, r * (h W_hn + b_hn) added twice
        ctx.first_weight = 2
        inputs = _inputs(x, tokens, padding_idx)
        gates = WORKSPACE.empty(x, steps, batch, 3 * hidden)  # input pre-activations, then activations r, z, n
        inputs.project(_doubled(w_ih, *n), _doubled(b_ih, *n), gates.view(steps * batch, -1))
        rec = WORKSPACE.empty(x, steps, batch, 3 * hidden)  # h W_hh^T + b_hh
        h = WORKSPACE.empty(x, steps + 1, batch, hidden)
        h[0] = h0
        loop(x, w_hh).gru_forward(gates, h, rec, w_hh.t(), b_hh)
        return _finish_forward(ctx, w_ih, w_hh, inputs, (h, gates, rec), h)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dh_n):
        w_ih, w_hh = ctx.saved_tensors
        h, acts, rec = ctx.saved
        n = slice(2 * h.shape[2], None)
        grads = WORKSPACE.empty(acts, *acts.shape)
        dh_all = _hidden_grads(dout, dh_n, h)
        dh_prev = loop(h, w_hh).gru_backward(acts, h, rec, dh_all, grads, w_hh)
        dw_hh, db_hh = _recurrent_weight_grad(ctx, grads, h, w_hh), _row_sums(grads, _needs(ctx).b_hh)
        grads[..., n] = dh_all  # the input product sees n's gradient before r multiplies it
        dx, dw_ih, db_ih = _input_grads(ctx, grads, ctx.inputs, w_ih)
        WORKSPACE.release(grads, dh_all)
        return dx, dh_prev, dw_ih, dw_hh, db_ih, db_hh, None, None, None


class RNNFunction(torch.autograd.Function):
    """One tanh RNN layer: (x [B,T,I], h0 [B,H], W_ih, W_hh, b_ih, b_hh) -> (out [B,T,H], h_n)."""

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, tokens=None, padding_idx=None, narrow=None):
        w_ih, w_hh = _product_weights(narrow, w_ih, w_hh)
        batch, steps = h0.shape[0], (x if tokens is None else tokens).shape[1]
        hidden = w_hh.shape[1]
        ctx.first_weight = 2
        inputs = _inputs(x, tokens, padding_idx)
        h = WORKSPACE.empty(x, steps + 1, batch, hidden)
        h[0] = h0
        inputs.project(_doubled(w_ih), _doubled(b_ih + b_hh), h[1:].view(steps * batch, hidden))
        loop(x, w_hh).rnn_forward(h, _doubled(w_hh).t())
        return _finish_forward(ctx, w_ih, w_hh, inputs, (h,), h)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dh_n):
        w_ih, w_hh = ctx.saved_tensors
        (h,) = ctx.saved
        grads = WORKSPACE.empty(h, *h[1:].shape)
        dh_all = _hidden_grads(dout, dh_n, h)
        dh_prev = loop(h, w_hh).rnn_backward(h, dh_all, grads, w_hh)
        dx, dw_ih, dw_hh, db_ih, db_hh = _shared_gate_grads(ctx, grads, ctx.inputs, h, w_ih, w_hh)
        WORKSPACE.release(grads, dh_all)
        return dx, dh_prev, dw_ih, dw_hh, db_ih, db_hh, None, None, None


class FusedRecurrent:
    """Mixin for nn.RNN/LSTM/GRU: the fused Function for padded batches where `kernel` allows, nn's kernel otherwise.

    kernel "torch" always uses nn's kernel; "fused" the fused one for every
    padded batch, whatever the device; "auto" the fused one on CPU where it
    measured faster (scripts/bench_kernel.py): with the compiled loop
    (fused_loop.py), for training with every cell and for inference unless
    nn's own kernel is a fused one (oneDNN's float32 LSTM); with the Python
    loop only for training where nn's kernel is the step-by-step one. nn's on
    CUDA (cuDNN).
    """

    function: type[torch.autograd.Function]

    def nn_kernel_is_fused(self, input: torch.Tensor) -> bool:
        """Whether nn's own CPU kernel for this input is already a fused one (RNN and GRU: never)."""
        return False

    def __init__(self, *args, kernel: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}: choose one of {', '.join(KERNELS)}")
        self.kernel = kernel

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel={self.kernel!r}"

    def uses_fused(self, input) -> bool:
        """Whether forward(input) runs the fused Function (layers it does not cover always run nn's)."""
        return isinstance(input, torch.Tensor) and input.dim() == 3 and self._fused_for(input)

    def folds(self, embedding: nn.Embedding) -> bool:
        """Whether forward(tokens, embedding=embedding) folds the lookup into the first layer's input product
        (TokenInputs): when it trains fused, for a plain lookup (no max_norm, per-frequency scaling or sparse
        gradient). Inference looks up first, as nn.Embedding's own call (hooks, the parameter summary)."""
        plain = embedding.max_norm is None and not embedding.scale_grad_by_freq and not embedding.sparse
        return plain and torch.is_grad_enabled() and self._fused_for(embedding.weight)

    def _fused_for(self, input: torch.Tensor) -> bool:
        """uses_fused for an input of `input`'s dtype, device and requires_grad."""
        if self.kernel == "torch" or input.dtype not in (torch.float32, torch.float64) or not self.batch_first or not self.bias:
            return False
        if self.bidirectional or self.proj_size or getattr(self, "nonlinearity", "tanh") != "tanh":
            return False
        if self.kernel == "fused":
            return True
        if input.device.type != "cpu":
            return False
        training = torch.is_grad_enabled() and (input.requires_grad or any(p.requires_grad for p in self.parameters()))
        if compiled_loop() is not None:
            return training or not self.nn_kernel_is_fused(input)
        return training and not self.nn_kernel_is_fused(input)

    def forward(self, input, hx=None, embedding: nn.Embedding | None = None):
        """nn's forward; with `embedding`, `input` is token ids [B, T] to look up in it (folded where `folds`)."""
        if embedding is not None and not self.folds(embedding):
            input, embedding = embedding(input), None
        if embedding is None and not self.uses_fused(input):
            return super().forward(input, hx)
        lstm = isinstance(self, nn.LSTM)
        like = input if embedding is None else embedding.weight
        if hx is None:
            zeros = like.new_zeros(self.num_layers, input.shape[0], self.hidden_size)
            hx = (zeros, zeros) if lstm else zeros
        if embedding is None:
            self.check_forward_args(input, hx, None)
        states = hx if lstm else (hx,)
        x, finals = input, []
        narrow = autocast_products(like)
        for layer in range(self.num_layers):
            if layer:
                x = F.dropout(x, self.dropout, self.training)
            weights = (getattr(self, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            initial = [s[layer] for s in states]
            with torch.autocast("cpu", enabled=False):  # the layer picks its products' precision itself (narrow)
                if layer == 0 and embedding is not None:
                    x, *final = self.function.apply(embedding.weight, *initial, *weights, x, embedding.padding_idx, narrow)
                else:
                    x, *final = self.function.apply(x, *initial, *weights, None, None, narrow)
            finals.append(final)
        state = tuple(torch.stack(parts) for parts in zip(*finals))
        return x, state if lstm else state[0]


class FusedRNN(FusedRecurrent, nn.RNN):
    function = RNNFunction


class FusedLSTM(FusedRecurrent, nn.LSTM):
    function = LSTMFunction

    def nn_kernel_is_fused(self, input: torch.Tensor) -> bool:
        """nn.LSTM runs oneDNN's LSTM (forward and backward) on float32 CPU input when oneDNN is on."""
        return torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled and input.dtype == torch.float32


class FusedGRU(FusedRecurrent, nn.GRU):
    function = GRUFunction
