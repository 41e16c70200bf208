// CPU involution: forward, gradient of the input and of the weight.
// Row-oriented loops over contiguous NCHW data, register-blocked over output
// columns, parallel with at::parallel_for, accumulation in at::opmath_type
// (float for bfloat16/half). Extra memory: the result plus a few padded rows
// per thread.
#include <torch/extension.h>

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "involution_index.h"

namespace {

using involution::index_t;

struct Geometry {
  index_t n, c, h, w, groups, kh, kw, ho, wo, sh, sw, ph, pw, dh, dw;
  index_t channels_per_group() const { return c / groups; }
  index_t weight_plane() const { return kh * kw * ho * wo; }  // one (n, g) slice of the weight
};

// Per kernel column tap v: output columns [lo, hi) that read inside the image.
struct ColumnRanges {
  std::vector<index_t> lo, hi;
  explicit ColumnRanges(const Geometry& g) : lo(g.kw), hi(g.kw) {
    for (index_t v = 0; v < g.kw; ++v)
      involution::valid_output_range(v, g.w, g.wo, g.sw, g.pw, g.dw, &lo[v], &hi[v]);
  }
};

// acc[j * step + offset] += a[j] * b[j] for j in [lo, hi)
template <typename acc_t, typename a_t, typename b_t>
inline void scatter_fma(acc_t* __restrict__ acc, const a_t* __restrict__ a, const b_t* __restrict__ b, index_t lo,
                        index_t hi, index_t step, index_t offset) {
  if (step == 1) {
    acc_t* __restrict__ shifted = acc + offset;
    for (index_t j = lo; j < hi; ++j) shifted[j] += static_cast<acc_t>(a[j]) * static_cast<acc_t>(b[j]);
  } else {
    for (index_t j = lo; j < hi; ++j) acc[j * step + offset] += static_cast<acc_t>(a[j]) * static_cast<acc_t>(b[j]);
  }
}

template <typename scalar_t, typename acc_t>
inline void store_row(scalar_t* dst, const acc_t* src, index_t count) {
  for (index_t j = 0; j < count; ++j) dst[j] = static_cast<scalar_t>(src[j]);
}

// Register-blocked kernels: kBlock output columns are accumulated in registers
// over all kernel taps (and channels). Rows are first copied, converted to
// acc_t and zero-padded, so the inner loops have no bounds checks and read
// past no tensor's end. kStride == 0 means "stride known only at run time".
constexpr index_t kBlock = 16;

index_t round_up(index_t value, index_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// dst[q] = src[q - offset] for 0 <= q - offset < count, else 0, for q in [0, length)
template <typename acc_t, typename scalar_t>
inline void copy_padded(acc_t* dst, const scalar_t* src, index_t count, index_t offset, index_t length) {
  for (index_t q = 0; q < length; ++q) {
    const index_t k = q - offset;
    dst[q] = (k >= 0 && k < count) ? static_cast<acc_t>(src[k]) : acc_t(0);
  }
}

template <int kStride, typename acc_t>
inline void block_fma(acc_t (&acc)[kBlock], const acc_t* __restrict__ a, const acc_t* __restrict__ b, index_t step) {
  const index_t s = kStride ? kStride : step;
  for (index_t lane = 0; lane < kBlock; ++lane) acc[lane] += a[lane] * b[lane * s];
}

template <typename scalar_t, typename acc_t>
inline void store_block(scalar_t* dst, const acc_t (&acc)[kBlock], index_t count) {
  for (index_t lane = 0; lane < count; ++lane) dst[lane] = static_cast<scalar_t>(acc[lane]);
}

// Padded input row length: column j*s + v*d of the padded row is x column j*s + v*d - p.
index_t padded_input_width(const Geometry& g) { return (round_up(g.wo, kBlock) - 1) * g.sw + (g.kw - 1) * g.dw + 1; }

// One task per (n, g, i): the weight rows of output row i are shared by the group's channels.
template <int kStride, typename scalar_t>
void forward_kernel(const scalar_t* x, const scalar_t* weight, scalar_t* out, const Geometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t cpg = g.channels_per_group(), wo_pad = round_up(g.wo, kBlock), xw = padded_input_width(g);
  at::parallel_for(0, g.n * g.groups * g.ho, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> w_rows(g.kh * g.kw * wo_pad), x_rows(g.kh * xw);
    std::vector<index_t> taps;
    for (int64_t task = begin; task < end; ++task) {
      const index_t i = task % g.ho, ng = task / g.ho, group = ng % g.groups, n = ng / g.groups;
      taps.clear();
      for (index_t u = 0; u < g.kh; ++u)
        if (involution::inside(involution::input_coord(i, u, g.sh, g.ph, g.dh), g.h)) taps.push_back(u);
      const scalar_t* w_ng = weight + ng * g.weight_plane();
      for (index_t u : taps)
        for (index_t v = 0; v < g.kw; ++v)
          copy_padded(&w_rows[(u * g.kw + v) * wo_pad], w_ng + ((u * g.kw + v) * g.ho + i) * g.wo, g.wo, 0, wo_pad);
      for (index_t cl = 0; cl < cpg; ++cl) {
        const index_t c = group * cpg + cl;
        const scalar_t* x_nc = x + (n * g.c + c) * g.h * g.w;
        for (index_t u : taps) {
          const index_t row = involution::input_coord(i, u, g.sh, g.ph, g.dh);
          copy_padded(&x_rows[u * xw], x_nc + row * g.w, g.w, g.pw, xw);
        }
        scalar_t* out_row = out + ((n * g.c + c) * g.ho + i) * g.wo;
        for (index_t j0 = 0; j0 < g.wo; j0 += kBlock) {
          acc_t acc[kBlock] = {};
          for (index_t u : taps)
            for (index_t v = 0; v < g.kw; ++v)
              block_fma<kStride>(acc, &w_rows[(u * g.kw + v) * wo_pad + j0], &x_rows[u * xw + j0 * g.sw + v * g.dw],
                                 g.sw);
          store_block(out_row + j0, acc, std::min(kBlock, g.wo - j0));
        }
      }
    }
  });
}

// One task per (n, g, i): all K*K weight rows of output row i, summed over the group's channels.
template <int kStride, typename scalar_t>
void backward_weight_kernel(const scalar_t* grad_out, const scalar_t* x, scalar_t* grad_weight, const Geometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t cpg = g.channels_per_group(), wo_pad = round_up(g.wo, kBlock), xw = padded_input_width(g);
  at::parallel_for(0, g.n * g.groups * g.ho, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> go_rows(cpg * wo_pad), x_rows(cpg * g.kh * xw);
    for (int64_t task = begin; task < end; ++task) {
      const index_t i = task % g.ho, ng = task / g.ho, group = ng % g.groups, n = ng / g.groups;
      for (index_t cl = 0; cl < cpg; ++cl) {
        const index_t c = group * cpg + cl;
        copy_padded(&go_rows[cl * wo_pad], grad_out + ((n * g.c + c) * g.ho + i) * g.wo, g.wo, 0, wo_pad);
      }
      scalar_t* gw_ng = grad_weight + ng * g.weight_plane();
      for (index_t u = 0; u < g.kh; ++u) {
        const index_t row = involution::input_coord(i, u, g.sh, g.ph, g.dh);
        if (!involution::inside(row, g.h)) {
          for (index_t v = 0; v < g.kw; ++v) std::fill_n(gw_ng + ((u * g.kw + v) * g.ho + i) * g.wo, g.wo, scalar_t(0));
          continue;
        }
        for (index_t cl = 0; cl < cpg; ++cl) {
          const scalar_t* x_row = x + ((n * g.c + group * cpg + cl) * g.h + row) * g.w;
          copy_padded(&x_rows[(cl * g.kh + u) * xw], x_row, g.w, g.pw, xw);
        }
        for (index_t v = 0; v < g.kw; ++v) {
          scalar_t* gw_row = gw_ng + ((u * g.kw + v) * g.ho + i) * g.wo;
          for (index_t j0 = 0; j0 < g.wo; j0 += kBlock) {
            acc_t acc[kBlock] = {};
            for (index_t cl = 0; cl < cpg; ++cl)
              block_fma<kStride>(acc, &go_rows[cl * wo_pad + j0], &x_rows[(cl * g.kh + u) * xw + j0 * g.sw + v * g.dw],
                                 g.sw);
            store_block(gw_row + j0, acc, std::min(kBlock, g.wo - j0));
          }
        }
      }
    }
  });
}

// Column stride 1: one task per input row (n, g, h) gathering over taps. With t = col + shift - v*d
// (shift = (KW-1)*d), the output column read is j = t - shift + p for every v, so the weight and
// gradient rows are padded once on that common axis.
template <typename scalar_t>
void backward_input_unit_stride_kernel(const scalar_t* grad_out, const scalar_t* weight, scalar_t* grad_x,
                                       const Geometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t cpg = g.channels_per_group(), shift = (g.kw - 1) * g.dw;
  const index_t length = round_up(g.w, kBlock) + shift, offset = shift - g.pw;
  at::parallel_for(0, g.n * g.groups * g.h, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> w_rows(g.kh * g.kw * length), go_rows(g.kh * length);
    std::vector<index_t> taps, rows_out;
    for (int64_t task = begin; task < end; ++task) {
      const index_t row = task % g.h, ng = task / g.h, group = ng % g.groups, n = ng / g.groups;
      taps.clear();
      rows_out.clear();
      for (index_t u = 0; u < g.kh; ++u) {
        index_t i;
        if (involution::output_for_input(row, u, g.ho, g.sh, g.ph, g.dh, &i)) {
          taps.push_back(u);
          rows_out.push_back(i);
        }
      }
      const scalar_t* w_ng = weight + ng * g.weight_plane();
      for (size_t k = 0; k < taps.size(); ++k)
        for (index_t v = 0; v < g.kw; ++v)
          copy_padded(&w_rows[(taps[k] * g.kw + v) * length], w_ng + ((taps[k] * g.kw + v) * g.ho + rows_out[k]) * g.wo,
                      g.wo, offset, length);
      for (index_t cl = 0; cl < cpg; ++cl) {
        const index_t c = group * cpg + cl;
        for (size_t k = 0; k < taps.size(); ++k)
          copy_padded(&go_rows[taps[k] * length], grad_out + ((n * g.c + c) * g.ho + rows_out[k]) * g.wo, g.wo, offset,
                      length);
        scalar_t* gx_row = grad_x + ((n * g.c + c) * g.h + row) * g.w;
        for (index_t c0 = 0; c0 < g.w; c0 += kBlock) {
          acc_t acc[kBlock] = {};
          for (index_t u : taps)
            for (index_t v = 0; v < g.kw; ++v) {
              const index_t t = c0 + shift - v * g.dw;
              const acc_t* w_row = &w_rows[(u * g.kw + v) * length + t];
              const acc_t* go_row = &go_rows[u * length + t];
              for (index_t lane = 0; lane < kBlock; ++lane) acc[lane] += w_row[lane] * go_row[lane];
            }
          store_block(gx_row + c0, acc, std::min(kBlock, g.w - c0));
        }
      }
    }
  });
}

// Any column stride: one task per input row (n, c, h); rows gather, columns scatter within the owned row.
template <typename scalar_t>
void backward_input_strided_kernel(const scalar_t* grad_out, const scalar_t* weight, scalar_t* grad_x,
                                   const Geometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const ColumnRanges cols(g);
  const index_t cpg = g.channels_per_group();
  at::parallel_for(0, g.n * g.c * g.h, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(g.w);
    for (int64_t task = begin; task < end; ++task) {
      const index_t cl = task % cpg, rest = task / cpg;
      const index_t row = rest % g.h, ng = rest / g.h, group = ng % g.groups, n = ng / g.groups;
      const index_t c = group * cpg + cl;
      const scalar_t* w_ng = weight + ng * g.weight_plane();
      std::fill(acc.begin(), acc.end(), acc_t(0));
      for (index_t u = 0; u < g.kh; ++u) {
        index_t i;
        if (!involution::output_for_input(row, u, g.ho, g.sh, g.ph, g.dh, &i)) continue;
        const scalar_t* go_row = grad_out + ((n * g.c + c) * g.ho + i) * g.wo;
        for (index_t v = 0; v < g.kw; ++v) {
          const scalar_t* w_row = w_ng + ((u * g.kw + v) * g.ho + i) * g.wo;
          scatter_fma(acc.data(), w_row, go_row, cols.lo[v], cols.hi[v], g.sw, v * g.dw - g.pw);
        }
      }
      store_row(grad_x + ((n * g.c + c) * g.h + row) * g.w, acc.data(), g.w);
    }
  });
}

template <typename scalar_t>
void backward_input_kernel(const scalar_t* grad_out, const scalar_t* weight, scalar_t* grad_x, const Geometry& g) {
  if (g.sw == 1)
    backward_input_unit_stride_kernel(grad_out, weight, grad_x, g);
  else
    backward_input_strided_kernel(grad_out, weight, grad_x, g);
}

void check_pair(const std::vector<int64_t>& v, const char* name) {
  TORCH_CHECK(v.size() == 2, "involution cpu: ", name, " must have 2 values");
}

Geometry make_geometry(index_t n, index_t c, index_t h, index_t w, index_t groups, index_t kh, index_t kw,
                       const std::vector<int64_t>& stride, const std::vector<int64_t>& padding,
                       const std::vector<int64_t>& dilation) {
  check_pair(stride, "stride");
  check_pair(padding, "padding");
  check_pair(dilation, "dilation");
  TORCH_CHECK(groups >= 1 && c % groups == 0, "involution cpu: groups must divide channels");
  TORCH_CHECK(kh >= 1 && kw >= 1 && stride[0] >= 1 && stride[1] >= 1 && dilation[0] >= 1 && dilation[1] >= 1 &&
                  padding[0] >= 0 && padding[1] >= 0,
              "involution cpu: invalid kernel size, stride, padding or dilation");
  Geometry g{n, c, h, w, groups, kh, kw, 0, 0, stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1]};
  g.ho = involution::output_size(h, kh, g.sh, g.ph, g.dh);
  g.wo = involution::output_size(w, kw, g.sw, g.pw, g.dw);
  TORCH_CHECK(g.ho >= 1 && g.wo >= 1, "involution cpu: empty output");
  return g;
}

void check_cpu(const at::Tensor& t, const char* name, int64_t dims) {
  TORCH_CHECK(t.device().is_cpu(), "involution cpu: ", name, " must be a CPU tensor");
  TORCH_CHECK(t.dim() == dims, "involution cpu: ", name, " must be ", dims, "-D");
}

at::Tensor forward(const at::Tensor& x_in, const at::Tensor& weight_in, std::vector<int64_t> stride,
                   std::vector<int64_t> padding, std::vector<int64_t> dilation) {
  check_cpu(x_in, "x", 4);
  check_cpu(weight_in, "weight", 6);
  TORCH_CHECK(x_in.scalar_type() == weight_in.scalar_type(), "involution cpu: dtype mismatch");
  const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
  const Geometry g = make_geometry(x.size(0), x.size(1), x.size(2), x.size(3), weight.size(1), weight.size(2),
                                   weight.size(3), stride, padding, dilation);
  TORCH_CHECK(weight.size(0) == g.n && weight.size(4) == g.ho && weight.size(5) == g.wo,
              "involution cpu: weight shape does not match the output");
  at::Tensor out = at::empty({g.n, g.c, g.ho, g.wo}, x.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "involution_cpu_forward", [&] {
    const auto run = g.sw == 1 ? forward_kernel<1, scalar_t> : forward_kernel<0, scalar_t>;
    run(x.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), g);
  });
  return out;
}

at::Tensor backward_input(const at::Tensor& grad_in, const at::Tensor& weight_in, int64_t h, int64_t w,
                          std::vector<int64_t> stride, std::vector<int64_t> padding, std::vector<int64_t> dilation) {
  check_cpu(grad_in, "grad_out", 4);
  check_cpu(weight_in, "weight", 6);
  TORCH_CHECK(grad_in.scalar_type() == weight_in.scalar_type(), "involution cpu: dtype mismatch");
  const at::Tensor grad_out = grad_in.contiguous(), weight = weight_in.contiguous();
  const Geometry g = make_geometry(grad_out.size(0), grad_out.size(1), h, w, weight.size(1), weight.size(2),
                                   weight.size(3), stride, padding, dilation);
  TORCH_CHECK(grad_out.size(2) == g.ho && grad_out.size(3) == g.wo && weight.size(4) == g.ho &&
                  weight.size(5) == g.wo && weight.size(0) == g.n,
              "involution cpu: grad_out/weight shape does not match the output");
  at::Tensor grad_x = at::empty({g.n, g.c, g.h, g.w}, grad_out.options());
  if (grad_x.numel() == 0) return grad_x;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad_out.scalar_type(), "involution_cpu_backward_input", [&] {
    backward_input_kernel<scalar_t>(grad_out.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
                                    grad_x.mutable_data_ptr<scalar_t>(), g);
  });
  return grad_x;
}

at::Tensor backward_weight(const at::Tensor& grad_in, const at::Tensor& x_in, int64_t kh, int64_t kw, int64_t groups,
                           std::vector<int64_t> stride, std::vector<int64_t> padding, std::vector<int64_t> dilation) {
  check_cpu(grad_in, "grad_out", 4);
  check_cpu(x_in, "x", 4);
  TORCH_CHECK(grad_in.scalar_type() == x_in.scalar_type(), "involution cpu: dtype mismatch");
  const at::Tensor grad_out = grad_in.contiguous(), x = x_in.contiguous();
  const Geometry g =
      make_geometry(x.size(0), x.size(1), x.size(2), x.size(3), groups, kh, kw, stride, padding, dilation);
  TORCH_CHECK(grad_out.size(0) == g.n && grad_out.size(1) == g.c && grad_out.size(2) == g.ho &&
                  grad_out.size(3) == g.wo,
              "involution cpu: grad_out shape does not match the output");
  at::Tensor grad_weight = at::empty({g.n, g.groups, g.kh, g.kw, g.ho, g.wo}, grad_out.options());
  if (grad_weight.numel() == 0) return grad_weight;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad_out.scalar_type(), "involution_cpu_backward_weight", [&] {
    const auto run = g.sw == 1 ? backward_weight_kernel<1, scalar_t> : backward_weight_kernel<0, scalar_t>;
    run(grad_out.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), grad_weight.mutable_data_ptr<scalar_t>(), g);
  });
  return grad_weight;
}

// Tabulates the shared index functions for one dimension, so tests can check them against brute force:
// ranges (K, 2) = valid_output_range per tap; inverse (in_size, K) = output_for_input or -1; and the
// output size.
std::tuple<at::Tensor, at::Tensor, int64_t> index_table(int64_t in_size, int64_t k, int64_t s, int64_t p, int64_t d) {
  const index_t out_size = involution::output_size(in_size, k, s, p, d);
  at::Tensor ranges = at::empty({k, 2}, at::kLong);
  at::Tensor inverse = at::full({in_size, k}, -1, at::kLong);
  auto r = ranges.accessor<int64_t, 2>();
  auto inv = inverse.accessor<int64_t, 2>();
  for (index_t t = 0; t < k; ++t) {
    index_t lo, hi;
    involution::valid_output_range(t, in_size, out_size, s, p, d, &lo, &hi);
    r[t][0] = lo;
    r[t][1] = hi;
    for (index_t in = 0; in < in_size; ++in) {
      index_t o;
      if (involution::output_for_input(in, t, out_size, s, p, d, &o)) inv[in][t] = o;
    }
  }
  return {ranges, inverse, out_size};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "involution forward (CPU)");
  m.def("backward_input", &backward_input, "involution gradient of the input (CPU)");
  m.def("backward_weight", &backward_weight, "involution gradient of the weight (CPU)");
  m.def("index_table", &index_table, "shared index arithmetic, tabulated for tests");
}
