// CPU involution: forward, gradient of the input and of the weight.
// Row-oriented loops over contiguous NCHW data (vectorisable for stride 1),
// parallel with at::parallel_for, accumulation in at::opmath_type (float for
// bfloat16/half). Extra memory: the result plus one row buffer per thread.
#include <torch/extension.h>

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

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

// acc[j] += a[j] * b[j * step + offset] for j in [lo, hi)
template <typename acc_t, typename a_t, typename b_t>
inline void gather_fma(acc_t* __restrict__ acc, const a_t* __restrict__ a, const b_t* __restrict__ b, index_t lo,
                       index_t hi, index_t step, index_t offset) {
  if (step == 1) {
    const b_t* __restrict__ shifted = b + offset;
    for (index_t j = lo; j < hi; ++j) acc[j] += static_cast<acc_t>(a[j]) * static_cast<acc_t>(shifted[j]);
  } else {
    for (index_t j = lo; j < hi; ++j) acc[j] += static_cast<acc_t>(a[j]) * static_cast<acc_t>(b[j * step + offset]);
  }
}

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

// One task per (n, g, i): its weight rows stay in cache for the group's channels.
template <typename scalar_t>
void forward_kernel(const scalar_t* x, const scalar_t* weight, scalar_t* out, const Geometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const ColumnRanges cols(g);
  const index_t cpg = g.channels_per_group();
  at::parallel_for(0, g.n * g.groups * g.ho, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(g.wo);
    for (int64_t task = begin; task < end; ++task) {
      const index_t i = task % g.ho, ng = task / g.ho, group = ng % g.groups, n = ng / g.groups;
      const scalar_t* w_ng = weight + ng * g.weight_plane();
      for (index_t cl = 0; cl < cpg; ++cl) {
        const index_t c = group * cpg + cl;
        const scalar_t* x_nc = x + (n * g.c + c) * g.h * g.w;
        std::fill(acc.begin(), acc.end(), acc_t(0));
        for (index_t u = 0; u < g.kh; ++u) {
          const index_t row = involution::input_coord(i, u, g.sh, g.ph, g.dh);
          if (!involution::inside(row, g.h)) continue;
          for (index_t v = 0; v < g.kw; ++v) {
            const scalar_t* w_row = w_ng + ((u * g.kw + v) * g.ho + i) * g.wo;
            gather_fma(acc.data(), w_row, x_nc + row * g.w, cols.lo[v], cols.hi[v], g.sw, v * g.dw - g.pw);
          }
        }
        store_row(out + ((n * g.c + c) * g.ho + i) * g.wo, acc.data(), g.wo);
      }
    }
  });
}

// One task per input row (n, c, h), channels innermost so neighbouring tasks share weight rows.
// Rows gather from the output rows that read them; columns scatter within the owned row.
template <typename scalar_t>
void backward_input_kernel(const scalar_t* grad_out, const scalar_t* weight, scalar_t* grad_x, const Geometry& g) {
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

// One task per (n, g, i): accumulates the K*K weight rows of output row i over the group's channels.
template <typename scalar_t>
void backward_weight_kernel(const scalar_t* grad_out, const scalar_t* x, scalar_t* grad_weight, const Geometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const ColumnRanges cols(g);
  const index_t cpg = g.channels_per_group();
  at::parallel_for(0, g.n * g.groups * g.ho, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(g.kh * g.kw * g.wo);
    for (int64_t task = begin; task < end; ++task) {
      const index_t i = task % g.ho, ng = task / g.ho, group = ng % g.groups, n = ng / g.groups;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      for (index_t cl = 0; cl < cpg; ++cl) {
        const index_t c = group * cpg + cl;
        const scalar_t* x_nc = x + (n * g.c + c) * g.h * g.w;
        const scalar_t* go_row = grad_out + ((n * g.c + c) * g.ho + i) * g.wo;
        for (index_t u = 0; u < g.kh; ++u) {
          const index_t row = involution::input_coord(i, u, g.sh, g.ph, g.dh);
          if (!involution::inside(row, g.h)) continue;
          for (index_t v = 0; v < g.kw; ++v) {
            gather_fma(acc.data() + (u * g.kw + v) * g.wo, go_row, x_nc + row * g.w, cols.lo[v], cols.hi[v], g.sw,
                       v * g.dw - g.pw);
          }
        }
      }
      scalar_t* gw_ng = grad_weight + ng * g.weight_plane();
      for (index_t tap = 0; tap < g.kh * g.kw; ++tap)
        store_row(gw_ng + (tap * g.ho + i) * g.wo, acc.data() + tap * g.wo, g.wo);
    }
  });
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
    forward_kernel<scalar_t>(x.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
                             out.mutable_data_ptr<scalar_t>(), g);
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
    backward_weight_kernel<scalar_t>(grad_out.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                     grad_weight.mutable_data_ptr<scalar_t>(), g);
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
