// The per-step recurrences of models/fused.py's LSTM, GRU and RNN layers, compiled
// (models/fused_loop.py builds and loads this file once per machine).
//
// Each function runs one layer's whole loop over time on buffers the Python
// autograd Functions allocate and keep: per step one matrix product into the
// step's slice of a preallocated buffer (torch's GEMM micro-kernel on float32;
// the LSTM's backward adds a second, for the input's gradient),
// then the gate arithmetic as one pass of plain loops over the rows, with no
// temporaries and no per-operation dispatch. The conventions are those of
// PythonLoop in fused.py, which this file must match number for number (within
// float rounding): tanh(a) is 2*sigmoid(2a) - 1 with the tanh gates'
// pre-activations doubled beforehand, the LSTM keeps 2c, activations overwrite
// the pre-activations in place. float64 (gradcheck) runs the same loops with
// std::exp and ATen's products.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/native/CPUBlas.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <type_traits>
#include <vector>

namespace {

// exp(x) for float in a form the compiler vectorises: x = n ln2 + r with |r| <= ln2/2,
// e^r by its degree-6 Taylor polynomial (truncation error below 1.2e-7 relative: about one float step),
// 2^n built in the exponent bits. Clamped where float over- or underflows.
inline float exp_float(float x) {
  x = x < -87.0f ? -87.0f : x;  // with -fno-trapping-math these compare-and-selects vectorise
  x = x > 88.0f ? 88.0f : x;
  const float shift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float n = (x * 1.44269504088896341f + shift) - shift;
  float r = x - n * 0.693145751953125f;  // ln2 in two parts: the first exact in float
  r = r - n * 1.42860682030941723e-06f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

template <typename T>
inline T sigmoid(T x);

template <>
inline float sigmoid(float x) {
  return 1.0f / (1.0f + exp_float(-x));
}

template <>
inline double sigmoid(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}

// A layer's batch rows split between torch's threads for the WHOLE loop over time: the rows of a recurrence are
// independent, so each thread runs every step on its own rows and the threads meet once per loop, not once per
// step (a meeting per step costs more than a small step's work, and far more when the cores are shared).
template <typename F>
void over_batch(int64_t batch, const F& body) {
  const int64_t grain = std::max<int64_t>(8, (batch + at::get_num_threads() - 1) / at::get_num_threads());
  at::parallel_for(0, batch, grain, body);
}

// Step t's slice of a contiguous [T, ...] buffer, without making a tensor of it.
template <typename T>
inline T* step(const at::Tensor& x, int64_t t) {
  return x.data_ptr<T>() + t * x.stride(0);
}

// c = a @ b, or c += a @ b with `add`, for a [rows, k] and c [rows, n] at row strides lda and ldc, b [k, n]
// contiguous. float goes straight to torch's CPU GEMM micro-kernel (oneDNN's brgemm where the CPU has it, else
// BLAS) on pointers: no per-call dispatch, checks or views, which at a hidden size of 32 cost as much as the
// product itself.
template <typename T>
void product(int64_t rows, int64_t k, const T* a, int64_t lda, const at::Tensor& b, T* c, int64_t ldc, bool add) {
  const int64_t n = b.size(1);
  if constexpr (std::is_same_v<T, float>) {
    at::native::cpublas::brgemm(rows, n, k, lda, n, ldc, add, a, b.data_ptr<float>(), c);
  } else {
    const at::Tensor in = at::from_blob(const_cast<T*>(a), {rows, k}, {lda, 1}, b.options());
    at::Tensor out = at::from_blob(c, {rows, n}, {ldc, 1}, b.options());
    add ? out.addmm_(in, b) : out.copy_(at::mm(in, b));
  }
}

// Rows [start, start + rows) of c[tc] = a[ta] @ b, or += with `add`, for steps of contiguous [T, m, k] and
// [T, m, n] buffers (a 2-D one is its own step 0) and b [k, n].
template <typename T>
void product(const at::Tensor& a, int64_t ta, const at::Tensor& b, const at::Tensor& c, int64_t tc, bool add,
             int64_t start, int64_t rows) {
  const int64_t k = a.size(-1), n = b.size(1);
  product<T>(rows, k, step<T>(a, ta) + start * k, k, b, step<T>(c, tc) + start * n, n, add);
}

void check_contiguous(std::initializer_list<at::Tensor> buffers) {
  for (const auto& buffer : buffers) {
    TORCH_CHECK(buffer.is_contiguous(), "the recurrent loop's buffers must be contiguous");
  }
}

#define FLOATING_TYPES(tensor, name, ...) AT_DISPATCH_FLOATING_TYPES(tensor.scalar_type(), name, __VA_ARGS__)

#define R __restrict__

// One batch row of an LSTM step: i, f, g, o the four gates' pre-activations less the bias [4H] in, activations out.
template <typename T>
void lstm_forward_row(T* R i, T* R f, T* R g, T* R o, const T* R bias, const T* R cc_prev, T* R cc_next,
                      T* R tanh_c, T* R h_next, int64_t hidden) {
  const T *R bi = bias, *R bf = bias + hidden, *R bg = bias + 2 * hidden, *R bo = bias + 3 * hidden;
  for (int64_t k = 0; k < hidden; ++k) {
    const T ik = sigmoid(i[k] + bi[k]), fk = sigmoid(f[k] + bf[k]), gk = 2 * sigmoid(g[k] + bg[k]) - 1;
    const T ok = sigmoid(o[k] + bo[k]);
    i[k] = ik;
    f[k] = fk;
    g[k] = gk;
    o[k] = ok;
    const T cc = fk * cc_prev[k] + 2 * ik * gk;
    cc_next[k] = cc;
    const T tanh = 2 * sigmoid(cc) - 1;
    tanh_c[k] = tanh;
    h_next[k] = ok * tanh;
  }
}

// xh [T+1, B, K]: step t's product input, [x_t, h_t] (K = I + H) or h_t alone (K = H), with h_0 given; each
// step writes its state into the last H columns of the next. w_in [K, 4H]: [W_ih; W_hh]^T or W_hh^T, and bias
// [4H], added in the gate arithmetic (g doubled in both). ONE product per step forms the input's and the state's
// part together while the step is in cache; where xh holds the states alone, gates [T, B, 4H] holds the input's
// part (g doubled) beforehand and the product adds to it. Activations i, f, g, o out in gates; cc [T+1, B, H]
// (2c) with step 0 given; tanh_c [T, B, H].
void lstm_forward(at::Tensor gates, at::Tensor xh, at::Tensor cc, at::Tensor tanh_c, const at::Tensor& w_in_,
                  const at::Tensor& bias_) {
  check_contiguous({gates, xh, cc, tanh_c});
  const at::Tensor w_in = w_in_.contiguous(), bias = bias_.contiguous();
  const int64_t steps = gates.size(0), batch = gates.size(1), hidden = cc.size(2), width = 4 * hidden;
  const int64_t columns = xh.size(2);
  FLOATING_TYPES(gates, "lstm_forward", [&] {
    const scalar_t* b_row = bias.data_ptr<scalar_t>();
    over_batch(batch, [&](int64_t begin, int64_t end) {
      for (int64_t t = 0; t < steps; ++t) {
        product<scalar_t>(xh, t, w_in, gates, t, columns == hidden, begin, end - begin);
        scalar_t* act = step<scalar_t>(gates, t);
        scalar_t* c_prev = step<scalar_t>(cc, t);
        scalar_t* c_next = step<scalar_t>(cc, t + 1);
        scalar_t* tc = step<scalar_t>(tanh_c, t);
        scalar_t* h_next = step<scalar_t>(xh, t + 1) + columns - hidden;
        for (int64_t b = begin; b < end; ++b) {
          scalar_t* row = act + b * width;
          const int64_t at = b * hidden;
          lstm_forward_row(row, row + hidden, row + 2 * hidden, row + 3 * hidden, b_row, c_prev + at, c_next + at,
                           tc + at, h_next + b * columns, hidden);
        }
      }
    });
  });
}

// One batch row of an LSTM step backwards: dc (from the step after) in, the step before's out.
template <typename T>
void lstm_backward_row(const T* R i, const T* R f, const T* R g, const T* R o, const T* R cc_prev, const T* R tanh_c,
                       const T* R dh, T* R dc, T* R di, T* R df, T* R dg, T* R d_o, int64_t hidden) {
  for (int64_t k = 0; k < hidden; ++k) {
    const T ik = i[k], fk = f[k], gk = g[k], ok = o[k], tanh = tanh_c[k], dhk = dh[k];
    const T dck = dc[k] + dhk * ok * (1 - tanh * tanh);
    di[k] = dck * gk * (ik * (1 - ik));
    df[k] = dck * (T(0.5) * cc_prev[k]) * (fk * (1 - fk));
    dg[k] = dck * ik * (1 - gk * gk);
    d_o[k] = dhk * tanh * (ok * (1 - ok));
    dc[k] = dck * fk;
  }
}

// acts [T, B, 4H] (i, f, g, o), cc [T+1, B, H], tanh_c [T, B, H]; dh_all [T, B, H]: the gradient from
// above, to which each step adds the recurrent part; dc [B, H]: dc_n in, dc_0 out; grads [T, B, 4H]: the
// pre-activation gradients out. With `dx` [B, T, I] (batch first, the layer's input gradient), also
// dx[:, t] = grads[t] @ w_ih per step, and with `db` [4H] the bias gradient, the sum of all rows of
// grads, while the step's gradients are in cache. Returns dh_0.
at::Tensor lstm_backward(const at::Tensor& acts, const at::Tensor& cc, const at::Tensor& tanh_c, at::Tensor dh_all,
                         at::Tensor dc, at::Tensor grads, const at::Tensor& w_hh_, const std::optional<at::Tensor>& w_ih_,
                         std::optional<at::Tensor> dx, std::optional<at::Tensor> db) {
  const at::Tensor w_hh = w_hh_.contiguous();
  const at::Tensor w_ih = dx ? w_ih_->contiguous() : at::Tensor();
  check_contiguous({acts, cc, tanh_c, dh_all, dc, grads});
  for (const auto& out : {dx, db}) {
    if (out) {
      check_contiguous({*out});
    }
  }
  const int64_t steps = acts.size(0), batch = acts.size(1), hidden = tanh_c.size(2), width = 4 * hidden;
  at::Tensor dh_prev = at::empty({batch, hidden}, dh_all.options());
  // each thread's rows' part of db, in double (10^4..10^5 rows), added in thread order after the loop: the
  // same sum whichever thread finishes first
  std::vector<double> partial_sums(db ? at::get_num_threads() * width : 0, 0.0);
  FLOATING_TYPES(acts, "lstm_backward", [&] {
    scalar_t* dcp = dc.data_ptr<scalar_t>();
    over_batch(batch, [&](int64_t begin, int64_t end) {
      double* R sum = db ? partial_sums.data() + at::get_thread_num() * width : nullptr;
      for (int64_t t = steps - 1; t >= 0; --t) {
        const scalar_t* act = step<scalar_t>(acts, t);
        const scalar_t* c_prev = step<scalar_t>(cc, t);
        const scalar_t* tc = step<scalar_t>(tanh_c, t);
        const scalar_t* dht = step<scalar_t>(dh_all, t);
        scalar_t* out = step<scalar_t>(grads, t);
        for (int64_t b = begin; b < end; ++b) {
          const scalar_t* row = act + b * width;
          scalar_t* grad = out + b * width;
          const int64_t at = b * hidden;
          lstm_backward_row(row, row + hidden, row + 2 * hidden, row + 3 * hidden, c_prev + at, tc + at, dht + at,
                            dcp + at, grad, grad + hidden, grad + 2 * hidden, grad + 3 * hidden, hidden);
          if (db) {
            for (int64_t k = 0; k < width; ++k) {
              sum[k] += grad[k];
            }
          }
        }
        product<scalar_t>(grads, t, w_hh, t ? dh_all : dh_prev, t ? t - 1 : 0, t != 0, begin, end - begin);
        if (dx) {
          const int64_t inputs = dx->size(2), stride = steps * inputs;
          product<scalar_t>(end - begin, width, out + begin * width, width, w_ih,
                            dx->data_ptr<scalar_t>() + begin * stride + t * inputs, stride, false);
        }
      }
    });
    if (db) {
      scalar_t* total = db->data_ptr<scalar_t>();
      for (int64_t k = 0; k < width; ++k) {
        double column = 0;
        for (size_t part = k; part < partial_sums.size(); part += width) {
          column += partial_sums[part];
        }
        total[k] = static_cast<scalar_t>(column);
      }
    }
  });
  return dh_prev;
}

// One batch row of a GRU step: r, z, n the input pre-activations in (n doubled), activations out.
template <typename T>
void gru_forward_row(T* R r, T* R z, T* R n, const T* R rec_r, const T* R rec_z, const T* R rec_n, const T* R h_prev,
                     T* R h_next, int64_t hidden) {
  for (int64_t k = 0; k < hidden; ++k) {
    const T rk = sigmoid(r[k] + rec_r[k]), zk = sigmoid(z[k] + rec_z[k]);
    const T nk = 2 * sigmoid(n[k] + 2 * rk * rec_n[k]) - 1;
    r[k] = rk;
    z[k] = zk;
    n[k] = nk;
    h_next[k] = nk + zk * (h_prev[k] - nk);
  }
}

// gates [T, B, 3H]: input pre-activations (n doubled) in, activations r, z, n out; h [T+1, B, H] with step 0
// given; rec [T, B, 3H]: h W_hh^T + b_hh out; w_rec = W_hh^T [H, 3H].
void gru_forward(at::Tensor gates, at::Tensor h, at::Tensor rec, const at::Tensor& w_rec_, const at::Tensor& b_hh) {
  check_contiguous({gates, h, rec});
  const at::Tensor w_rec = w_rec_.contiguous();
  rec.copy_(b_hh.expand_as(rec));
  const int64_t steps = gates.size(0), batch = gates.size(1), hidden = h.size(2);
  FLOATING_TYPES(gates, "gru_forward", [&] {
    over_batch(batch, [&](int64_t begin, int64_t end) {
      for (int64_t t = 0; t < steps; ++t) {
        product<scalar_t>(h, t, w_rec, rec, t, true, begin, end - begin);
        scalar_t* act = step<scalar_t>(gates, t);
        const scalar_t* rc = step<scalar_t>(rec, t);
        const scalar_t* h_prev = step<scalar_t>(h, t);
        scalar_t* h_next = step<scalar_t>(h, t + 1);
        for (int64_t b = begin; b < end; ++b) {
          scalar_t* row = act + b * 3 * hidden;
          const scalar_t* rrow = rc + b * 3 * hidden;
          const int64_t at = b * hidden;
          gru_forward_row(row, row + hidden, row + 2 * hidden, rrow, rrow + hidden, rrow + 2 * hidden, h_prev + at,
                          h_next + at, hidden);
        }
      }
    });
  });
}

// One batch row of a GRU step backwards: dh in, overwritten with dh * A; dh * z added to dh_below.
template <typename T>
void gru_backward_row(const T* R r, const T* R z, const T* R n, const T* R rec_n, const T* R h_prev, T* R dh,
                      T* R dh_below, T* R dr, T* R dz, T* R dn, int64_t hidden) {
  for (int64_t k = 0; k < hidden; ++k) {
    const T rk = r[k], zk = z[k], nk = n[k], dhk = dh[k];
    const T dha = dhk * ((1 - zk) * (1 - nk * nk));
    dr[k] = dha * rec_n[k] * (rk * (1 - rk));
    dz[k] = dhk * (h_prev[k] - nk) * (zk * (1 - zk));
    dn[k] = dha * rk;
    dh[k] = dha;
    dh_below[k] += dhk * zk;
  }
}

// acts [T, B, 3H] (r, z, n), h [T+1, B, H], rec [T, B, 3H]; dh_all as for the LSTM, but each step's
// entry is overwritten, once used, with dh * (1 - z)(1 - n^2): the gradient the input product sees for n;
// grads [T, B, 3H]: the recurrent product's pre-activation gradients out. Returns dh_0.
at::Tensor gru_backward(const at::Tensor& acts, const at::Tensor& h, const at::Tensor& rec, at::Tensor dh_all,
                        at::Tensor grads, const at::Tensor& w_hh_) {
  const at::Tensor w_hh = w_hh_.contiguous();
  check_contiguous({acts, h, rec, dh_all, grads});
  const int64_t steps = acts.size(0), batch = acts.size(1), hidden = h.size(2);
  at::Tensor dh_prev = at::zeros({batch, hidden}, h.options());  // dh_0: dh * z, then the product
  FLOATING_TYPES(acts, "gru_backward", [&] {
    over_batch(batch, [&](int64_t begin, int64_t end) {
      for (int64_t t = steps - 1; t >= 0; --t) {
        const scalar_t* act = step<scalar_t>(acts, t);
        const scalar_t* h_prev = step<scalar_t>(h, t);
        const scalar_t* rc = step<scalar_t>(rec, t);
        scalar_t* dht = step<scalar_t>(dh_all, t);
        scalar_t* out = step<scalar_t>(grads, t);
        scalar_t* below = t ? step<scalar_t>(dh_all, t - 1) : dh_prev.data_ptr<scalar_t>();
        for (int64_t b = begin; b < end; ++b) {
          const scalar_t* row = act + b * 3 * hidden;
          scalar_t* grad = out + b * 3 * hidden;
          const int64_t at = b * hidden;
          gru_backward_row(row, row + hidden, row + 2 * hidden, rc + b * 3 * hidden + 2 * hidden, h_prev + at,
                           dht + at, below + at, grad, grad + hidden, grad + 2 * hidden, hidden);
        }
        product<scalar_t>(grads, t, w_hh, t ? dh_all : dh_prev, t ? t - 1 : 0, true, begin, end - begin);
      }
    });
  });
  return dh_prev;
}

// h [T+1, B, H]: step 0 given, steps 1.. the doubled input pre-activations in, states out; w_rec [H, H] doubled.
void rnn_forward(at::Tensor h, const at::Tensor& w_rec_) {
  check_contiguous({h});
  const at::Tensor w_rec = w_rec_.contiguous();
  const int64_t steps = h.size(0) - 1, batch = h.size(1), hidden = h.size(2);
  FLOATING_TYPES(h, "rnn_forward", [&] {
    over_batch(batch, [&](int64_t begin, int64_t end) {
      for (int64_t t = 0; t < steps; ++t) {
        product<scalar_t>(h, t, w_rec, h, t + 1, true, begin, end - begin);
        scalar_t* v = step<scalar_t>(h, t + 1);
        for (int64_t j = begin * hidden; j < end * hidden; ++j) {
          v[j] = 2 * sigmoid(v[j]) - 1;
        }
      }
    });
  });
}

// h [T+1, B, H]; dh_all as for the LSTM; grads [T, B, H]: the pre-activation gradients out. Returns dh_0.
at::Tensor rnn_backward(const at::Tensor& h, at::Tensor dh_all, at::Tensor grads, const at::Tensor& w_hh_) {
  const at::Tensor w_hh = w_hh_.contiguous();
  check_contiguous({h, dh_all, grads});
  const int64_t steps = h.size(0) - 1, batch = h.size(1), hidden = h.size(2);
  at::Tensor dh_prev = at::empty({batch, hidden}, dh_all.options());
  FLOATING_TYPES(h, "rnn_backward", [&] {
    over_batch(batch, [&](int64_t begin, int64_t end) {
      for (int64_t t = steps - 1; t >= 0; --t) {
        const scalar_t* R state = step<scalar_t>(h, t + 1);
        const scalar_t* R dht = step<scalar_t>(dh_all, t);
        scalar_t* R out = step<scalar_t>(grads, t);
        for (int64_t j = begin * hidden; j < end * hidden; ++j) {
          out[j] = dht[j] * (1 - state[j] * state[j]);
        }
        product<scalar_t>(grads, t, w_hh, t ? dh_all : dh_prev, t ? t - 1 : 0, t != 0, begin, end - begin);
      }
    });
  });
  return dh_prev;
}

// out = a @ b (+ bias in every row) for a [m, k] and b [k, n]; for float32, in blocks of rows: the GRU's and
// RNN's products over all steps (input projections, dx) through the steps' `product`, which beats torch's BLAS
// call at these narrow shapes.
void matmul(const at::Tensor& a, const at::Tensor& b_, const std::optional<at::Tensor>& bias, at::Tensor out) {
  if (a.scalar_type() != at::kFloat) {
    bias ? at::addmm_out(out, *bias, a, b_) : at::mm_out(out, a, b_);
    return;
  }
  check_contiguous({a, out});
  const at::Tensor b = b_.contiguous();
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1), block = 256;
  const float* bias_row = bias ? bias->data_ptr<float>() : nullptr;
  at::parallel_for(0, (m + block - 1) / block, 1, [&](int64_t first, int64_t last) {
    for (int64_t index = first; index < last; ++index) {
      const int64_t start = index * block, rows = std::min(block, m - start);
      float* c = out.data_ptr<float>() + start * n;
      if (bias_row) {
        for (int64_t row = 0; row < rows; ++row) {
          std::memcpy(c + row * n, bias_row, n * sizeof(float));
        }
      }
      product<float>(rows, k, a.data_ptr<float>() + start * k, k, b, c, n, bias_row != nullptr);
    }
  });
}

// out[index[r]] += rows[r] for every row r of rows [N, G] (out [U, G], index [N] in [0, U)): the gate
// gradients summed per distinct token. torch's index_add_ expands the index to every element of `rows` and
// scatters element by element; a row at a time is one vectorised pass.
void index_add_rows(const at::Tensor& rows, const at::Tensor& index_, at::Tensor out) {
  const at::Tensor index = index_.to(at::kLong).contiguous();
  check_contiguous({rows, out});
  const int64_t n = rows.size(0), width = rows.size(1);
  const int64_t* at = index.data_ptr<int64_t>();
  FLOATING_TYPES(rows, "index_add_rows", [&] {
    const scalar_t* R in = rows.data_ptr<scalar_t>();
    scalar_t* R sums = out.data_ptr<scalar_t>();
    for (int64_t r = 0; r < n; ++r) {
      scalar_t* R target = sums + at[r] * width;
      const scalar_t* R source = in + r * width;
      for (int64_t k = 0; k < width; ++k) {
        target[k] += source[k];
      }
    }
  });
}

}  // namespace

TORCH_LIBRARY(seqtrain_fused_loop, m) {
  m.def("lstm_forward(Tensor(a!) gates, Tensor(b!) xh, Tensor(c!) cc, Tensor(d!) tanh_c, Tensor w_in, Tensor bias) -> ()", &lstm_forward);
  m.def("lstm_backward(Tensor acts, Tensor cc, Tensor tanh_c, Tensor(a!) dh_all, Tensor(b!) dc, Tensor(c!) grads, "
        "Tensor w_hh, Tensor? w_ih=None, Tensor(d!)? dx=None, Tensor(e!)? db=None) -> Tensor", &lstm_backward);
  m.def("gru_forward(Tensor(a!) gates, Tensor(b!) h, Tensor(c!) rec, Tensor w_rec, Tensor b_hh) -> ()", &gru_forward);
  m.def("gru_backward(Tensor acts, Tensor h, Tensor rec, Tensor(a!) dh_all, Tensor(b!) grads, Tensor w_hh) -> Tensor",
        &gru_backward);
  m.def("matmul(Tensor a, Tensor b, Tensor? bias, Tensor(a!) out) -> ()", &matmul);
  m.def("index_add_rows(Tensor rows, Tensor index, Tensor(a!) out) -> ()", &index_add_rows);
  m.def("rnn_forward(Tensor(a!) h, Tensor w_rec) -> ()", &rnn_forward);
  m.def("rnn_backward(Tensor h, Tensor(a!) dh_all, Tensor(b!) grads, Tensor w_hh) -> Tensor", &rnn_backward);
}
