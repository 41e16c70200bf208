// CPU involution: forward, gradient of the input and of the weight.
//
// Layout choices. Every kernel is vectorised over one spatial axis of a row
// (output columns j for forward and grad-weight, input columns of one stride
// phase for grad-input) in blocks of B = 8 or 16 lanes, whichever pads that
// axis least (7 -> 8, 14 -> 16, 28 -> 32, 56 -> 56), using GCC/Clang vector
// types so the accumulators stay in registers. The channels of a group share
// the kernel weight of a pixel, so forward and grad-input reuse one weight
// vector for a block of channels, and grad-weight reuses one grad_out vector
// for a block of kernel taps. Before the loops, each task stages what it reads
// into small per-thread buffers in at::opmath_type (float for bfloat16/half):
// zero-padded, and for column stride s split into s column phases, so that
// every tap reads contiguous lanes (stride 2 wastes none) and the inner loops
// have no bounds checks. Tasks are (n, group, block of rows), so small maps
// still give many tasks to balance across threads.
#include <torch/extension.h>

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "involution_index.h"

namespace {

using involution::ceil_div;
using involution::floor_div;
using involution::index_t;

struct Geometry {
  index_t n, c, h, w, groups, kh, kw, ho, wo, sh, sw, ph, pw, dh, dw;
  index_t channels_per_group() const { return c / groups; }
  index_t weight_plane() const { return kh * kw * ho * wo; }  // one (n, g) slice of the weight
};

index_t round_up(index_t value, index_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// 8 or 16 lanes, whichever pads `length` less (16 on a tie: fewer blocks).
int pick_lanes(index_t length) { return round_up(length, 16) == round_up(length, 8) ? 16 : 8; }

template <typename T, int B>
struct VecOf {
  typedef T type __attribute__((vector_size(B * sizeof(T))));
};
template <typename T, int B>
using vec_t = typename VecOf<T, B>::type;

template <typename V, typename T>
inline V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <typename scalar_t, typename V>
inline void store(scalar_t* dst, const V& acc, index_t count) {
  if (std::is_same<scalar_t, std::remove_reference_t<decltype(acc[0])>>::value && count * sizeof(scalar_t) == sizeof(V))
    std::memcpy(dst, &acc, sizeof(V));
  else
    for (index_t lane = 0; lane < count; ++lane) dst[lane] = static_cast<scalar_t>(acc[lane]);
}

// Rows per task: up to max_rows, fewer when (n, group) pairs are too few to keep the threads busy.
index_t rows_per_task(index_t rows, index_t slices, index_t max_rows = 8) {
  const index_t wanted_tasks = 8 * static_cast<index_t>(at::get_num_threads());
  const index_t blocks = std::max<index_t>(1, ceil_div(wanted_tasks, slices));
  return std::max<index_t>(1, std::min<index_t>(max_rows, ceil_div(rows, blocks)));
}

// Staged input of one task: for each channel of the group, `rows` padded input rows starting at
// padded row `first` (input row first - ph), each split into sw column phases of `width` values:
// stage[c][phase][r][m] = x[c][first + r - ph][m * sw + phase - pw], zero for columns outside the image;
// rows outside the image are left unset (every loop skips the taps that would read them).
// Tap v of output column j reads padded column j*sw + v*dw = (j + tap_offset)*sw + tap_phase.
struct InputStage {
  index_t rows, width, plane;
  std::vector<index_t> tap;  // per v: offset of the tap's lane 0 within a staged row-plane, minus j

  InputStage(const Geometry& g, index_t out_rows, index_t wo_pad) {
    rows = (out_rows - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    width = wo_pad + (g.kw - 1) * g.dw / g.sw + 1;
    plane = g.sw * rows * width;
    for (index_t v = 0; v < g.kw; ++v) tap.push_back((v * g.dw % g.sw) * rows * width + v * g.dw / g.sw);
  }

  template <typename acc_t, typename scalar_t>
  void fill(acc_t* dst, const scalar_t* x_group, index_t channels, index_t first, const Geometry& g) const {
    for (index_t c = 0; c < channels; ++c)
      for (index_t phase = 0; phase < g.sw; ++phase) {
        // staged columns [lo, hi) of this phase lie inside the image
        const index_t lo = std::min(width, std::max<index_t>(0, ceil_div(g.pw - phase, g.sw)));
        const index_t hi = std::min(width, std::max(lo, floor_div(g.w - 1 + g.pw - phase, g.sw) + 1));
        for (index_t r = 0; r < rows; ++r) {
          acc_t* d = dst + c * plane + (phase * rows + r) * width;
          const index_t row = first + r - g.ph;
          if (!involution::inside(row, g.h)) continue;  // never read: the loops skip taps outside the image
          const scalar_t* src = x_group + (c * g.h + row) * g.w;
          std::fill_n(d, lo, acc_t(0));
          // constant strides let the compiler vectorise the copy (stride 2 with permutes)
          if (g.sw == 1)
            for (index_t m = lo; m < hi; ++m) d[m] = static_cast<acc_t>(src[m - g.pw]);
          else if (g.sw == 2)
            for (index_t m = lo; m < hi; ++m) d[m] = static_cast<acc_t>(src[2 * m + phase - g.pw]);
          else
            for (index_t m = lo; m < hi; ++m) d[m] = static_cast<acc_t>(src[m * g.sw + phase - g.pw]);
          std::fill_n(d + hi, width - hi, acc_t(0));
        }
      }
  }
};

// Kernel taps [lo, hi) whose input row i*s + u*d - p lies inside [0, size).
void valid_taps(index_t i, index_t k, index_t size, index_t s, index_t p, index_t d, index_t* lo, index_t* hi) {
  *lo = std::min(k, std::max<index_t>(0, ceil_div(p - i * s, d)));
  *hi = std::max(*lo, std::min(k, floor_div(size - 1 + p - i * s, d) + 1));
}

template <typename T>
inline void prefetch_row(const T* p, index_t count) {
  for (index_t k = 0; k < count; k += 64 / sizeof(T)) __builtin_prefetch(p + k);
}

// dst[j] = src[j] for j < count, 0 up to length.
template <typename acc_t, typename scalar_t>
inline void stage_row(acc_t* dst, const scalar_t* src, index_t count, index_t length) {
  for (index_t j = 0; j < count; ++j) dst[j] = static_cast<acc_t>(src[j]);
  std::fill(dst + count, dst + length, acc_t(0));
}

// ----------------------------------------------------------------------------------------------- forward

// CB channels x B output columns: out[c][j] = sum over taps of w[u][v][j] * x[c][row(u)][col(j, v)].
template <int CB, int B, typename acc_t, typename scalar_t>
inline void forward_block(const acc_t* __restrict__ w_rows, index_t w_tap_stride, index_t w_row_stride,
                          const acc_t* __restrict__ xs,
                          const InputStage& st, const Geometry& g, index_t r_base, index_t u_lo, index_t u_hi,
                          index_t j0, scalar_t* out, index_t out_channel_stride, index_t count) {
  using V = vec_t<acc_t, B>;
  V acc[CB] = {};
  for (index_t u = u_lo; u < u_hi; ++u) {
    const acc_t* x_row = xs + (r_base + u * g.dh) * st.width + j0;
    for (index_t v = 0; v < g.kw; ++v) {
      const acc_t* w_tap = w_rows + (u * g.kw + v) * w_tap_stride + j0;
      // the K*K tap rows are too many streams for the hardware prefetcher: fetch the next output row's
      // lanes of this tap now (prefetches do not fault, so the last row may point past the tensor)
      __builtin_prefetch(w_tap + w_row_stride);
      const V wv = load<V>(w_tap);
      const acc_t* xv = x_row + st.tap[v];
      for (int c = 0; c < CB; ++c) acc[c] += wv * load<V>(xv + c * st.plane);
    }
  }
  for (int c = 0; c < CB; ++c) store(out + c * out_channel_stride, acc[c], count);
}

template <int B, typename scalar_t>
void forward_kernel(const scalar_t* x, const scalar_t* weight, scalar_t* out, const Geometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t cpg = g.channels_per_group(), wo_pad = round_up(g.wo, B);
  const index_t rows = rows_per_task(g.ho, g.n * g.groups), blocks = ceil_div(g.ho, rows);
  const InputStage st(g, rows, wo_pad);
  const index_t total_weight = g.n * g.groups * g.weight_plane();
  at::parallel_for(0, g.n * g.groups * blocks, 1, [&](int64_t begin, int64_t end) {
    // w_rows[u][v][i - i0][j]: each tap's rows of the block are one contiguous run of the weight tensor
    std::vector<acc_t> xs(cpg * st.plane), w_rows(g.kh * g.kw * rows * wo_pad);
    for (int64_t task = begin; task < end; ++task) {
      const index_t block = task % blocks, ng = task / blocks, group = ng % g.groups, n = ng / g.groups;
      const index_t i0 = block * rows, i1 = std::min(g.ho, i0 + rows);
      st.fill(xs.data(), x + (n * g.c + group * cpg) * g.h * g.w, cpg, i0 * g.sh, g);
      const scalar_t* w_ng = weight + ng * g.weight_plane();
      // float and double weights are read in place: the lanes of a ragged last block read the next
      // row (results discarded), so only a block whose reads would leave the tensor is staged
      const bool in_place = std::is_same<scalar_t, acc_t>::value &&
                            (ng + 1) * g.weight_plane() - (g.ho - i1 + 1) * g.wo + wo_pad <= total_weight;
      if (!in_place)
        for (index_t uv = 0; uv < g.kh * g.kw; ++uv)
          for (index_t i = i0; i < i1; ++i)
            stage_row(&w_rows[(uv * rows + i - i0) * wo_pad], w_ng + (uv * g.ho + i) * g.wo, g.wo, wo_pad);
      const index_t w_tap_stride = in_place ? g.ho * g.wo : rows * wo_pad, w_row_stride = in_place ? g.wo : wo_pad;
      for (index_t i = i0; i < i1; ++i) {
        index_t u_lo, u_hi;
        valid_taps(i, g.kh, g.h, g.sh, g.ph, g.dh, &u_lo, &u_hi);
        const acc_t* w_row = in_place ? reinterpret_cast<const acc_t*>(w_ng + i * g.wo) : &w_rows[(i - i0) * wo_pad];
        const index_t r_base = (i - i0) * g.sh;
        for (index_t j0 = 0; j0 < g.wo; j0 += B) {
          const index_t count = std::min<index_t>(B, g.wo - j0);
          index_t c = 0;
          auto channels = [&](auto block) {  // blocks of CB channels share each weight vector
            constexpr int CB = decltype(block)::value;
            for (; c + CB <= cpg; c += CB)
              forward_block<CB, B>(w_row, w_tap_stride, w_row_stride, &xs[c * st.plane], st, g, r_base, u_lo, u_hi,
                                   j0, out + ((n * g.c + group * cpg + c) * g.ho + i) * g.wo + j0, g.ho * g.wo, count);
          };
          channels(std::integral_constant<int, 8>());
          channels(std::integral_constant<int, 4>());
          channels(std::integral_constant<int, 1>());
        }
      }
    }
  });
}

// ----------------------------------------------------------------------------------------- grad weight

// VB taps (u, v0..v0+VB) x B output columns, summed over the group's channels.
template <int VB, int B, typename acc_t, typename scalar_t>
inline void backward_weight_block(const acc_t* __restrict__ go_rows, index_t wo_pad, const acc_t* __restrict__ xs,
                                  const InputStage& st, index_t cpg, index_t row, index_t v0, index_t j0,
                                  scalar_t* gw, index_t tap_stride, index_t next_row, index_t count) {
  using V = vec_t<acc_t, B>;
  V acc[VB] = {};
  const acc_t* x_row = xs + row * st.width + j0;
  for (index_t c = 0; c < cpg; ++c) {
    const V gv = load<V>(go_rows + c * wo_pad + j0);
    const acc_t* xc = x_row + c * st.plane;
    for (int t = 0; t < VB; ++t) acc[t] += gv * load<V>(xc + st.tap[v0 + t]);
  }
  for (int t = 0; t < VB; ++t) {
    store(gw + t * tap_stride, acc[t], count);
    __builtin_prefetch(gw + t * tap_stride + next_row, 1);  // the grad-weight rows are K*K store streams
  }
}

template <int B, typename scalar_t>
void backward_weight_kernel(const scalar_t* grad_out, const scalar_t* x, scalar_t* grad_weight, const Geometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t cpg = g.channels_per_group(), wo_pad = round_up(g.wo, B);
  const index_t rows = rows_per_task(g.ho, g.n * g.groups), blocks = ceil_div(g.ho, rows);
  const InputStage st(g, rows, wo_pad);
  const index_t tap_stride = g.ho * g.wo;
  at::parallel_for(0, g.n * g.groups * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> xs(cpg * st.plane), go_rows(cpg * wo_pad);
    for (int64_t task = begin; task < end; ++task) {
      const index_t block = task % blocks, ng = task / blocks, group = ng % g.groups, n = ng / g.groups;
      const index_t i0 = block * rows, i1 = std::min(g.ho, i0 + rows);
      st.fill(xs.data(), x + (n * g.c + group * cpg) * g.h * g.w, cpg, i0 * g.sh, g);
      scalar_t* gw_ng = grad_weight + ng * g.weight_plane();
      for (index_t i = i0; i < i1; ++i) {
        for (index_t cl = 0; cl < cpg; ++cl)
          stage_row(&go_rows[cl * wo_pad], grad_out + ((n * g.c + group * cpg + cl) * g.ho + i) * g.wo, g.wo,
                    wo_pad);
        index_t u_lo, u_hi;
        valid_taps(i, g.kh, g.h, g.sh, g.ph, g.dh, &u_lo, &u_hi);
        for (index_t u = 0; u < g.kh; ++u) {
          scalar_t* gw_u = gw_ng + (u * g.kw * g.ho + i) * g.wo;
          if (u < u_lo || u >= u_hi) {  // the tap reads padding for the whole row
            for (index_t v = 0; v < g.kw; ++v) std::fill_n(gw_u + v * tap_stride, g.wo, scalar_t(0));
            continue;
          }
          const index_t row = (i - i0) * g.sh + u * g.dh;
          for (index_t j0 = 0; j0 < g.wo; j0 += B) {
            const index_t count = std::min<index_t>(B, g.wo - j0);
            const acc_t* go = go_rows.data();
            index_t v = 0;
            auto block = [&](auto taps) {
              constexpr int VB = decltype(taps)::value;
              for (; v + VB <= g.kw; v += VB)
                backward_weight_block<VB, B>(go, wo_pad, xs.data(), st, cpg, row, v, j0, gw_u + v * tap_stride + j0,
                                             tap_stride, g.wo, count);
            };
            if (g.kw == 7) block(std::integral_constant<int, 7>());
            if (g.kw == 5) block(std::integral_constant<int, 5>());
            if (g.kw == 3) block(std::integral_constant<int, 3>());
            for (; v + 4 <= g.kw; v += 4)
              backward_weight_block<4, B>(go, wo_pad, xs.data(), st, cpg, row, v, j0, gw_u + v * tap_stride + j0,
                                          tap_stride, g.wo, count);
            for (; v + 2 <= g.kw; v += 2)
              backward_weight_block<2, B>(go, wo_pad, xs.data(), st, cpg, row, v, j0, gw_u + v * tap_stride + j0,
                                          tap_stride, g.wo, count);
            for (; v < g.kw; ++v)
              backward_weight_block<1, B>(go, wo_pad, xs.data(), st, cpg, row, v, j0, gw_u + v * tap_stride + j0,
                                          tap_stride, g.wo, count);
          }
        }
      }
    }
  });
}

// ------------------------------------------------------------------------------------------ grad input

// Gathering form: input column m*sw + phase receives, from tap v, output column j = m + k where
// k = (phase + pw - v*dw) / sw when that division is exact. Weight and grad_out rows are staged on
// the axis t = j + base, zero outside [0, wo), so every (m block, tap) reads contiguous lanes.
struct OutputRowStage {
  index_t base, length;
  std::vector<std::vector<std::pair<index_t, index_t>>> taps;  // per phase: (v, k) pairs

  OutputRowStage(const Geometry& g, index_t m_pad) : taps(g.sw) {
    index_t k_min = 0, k_max = 0;
    for (index_t phase = 0; phase < g.sw; ++phase)
      for (index_t v = 0; v < g.kw; ++v) {
        const index_t num = phase + g.pw - v * g.dw;
        if (num % g.sw != 0) continue;  // C++ remainder: zero exactly when sw divides num
        const index_t k = num / g.sw;
        taps[phase].emplace_back(v, k);
        k_min = std::min(k_min, k);
        k_max = std::max(k_max, k);
      }
    base = -k_min;
    length = base + m_pad + k_max;
  }
};

template <int CB, int B, typename acc_t, typename scalar_t>
inline void backward_input_block(const acc_t* __restrict__ w_st, const acc_t* __restrict__ go_st,
                                 const std::vector<std::pair<index_t, index_t>>& taps,
                                 const std::vector<index_t>& tap_rows, const std::vector<index_t>& tap_u,
                                 index_t row_len, index_t go_channel_stride, index_t kw, index_t m0, scalar_t* gx,
                                 index_t gx_channel_stride, index_t sw, index_t count) {
  using V = vec_t<acc_t, B>;
  V acc[CB] = {};
  for (size_t q = 0; q < tap_rows.size(); ++q) {
    const index_t r = tap_rows[q], u = tap_u[q];
    for (const auto& vk : taps) {
      const index_t t = m0 + vk.second;  // base already folded into the row pointers
      const V wv = load<V>(w_st + ((u * kw + vk.first) * row_len + r) + t);
      const acc_t* go = go_st + r + t;
      for (int c = 0; c < CB; ++c) acc[c] += wv * load<V>(go + c * go_channel_stride);
    }
  }
  for (int c = 0; c < CB; ++c)
    for (index_t lane = 0; lane < count; ++lane)
      gx[c * gx_channel_stride + lane * sw] = static_cast<scalar_t>(acc[c][lane]);
}

template <int B, typename scalar_t>
void backward_input_kernel(const scalar_t* grad_out, const scalar_t* weight, scalar_t* grad_x, const Geometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t cpg = g.channels_per_group(), m_count = ceil_div(g.w, g.sw), m_pad = round_up(m_count, B);
  const OutputRowStage st(g, m_pad);
  // Input rows per task: as many as keep the staged weight rows within about 1 MiB of float (L2), since
  // the K-1 output rows shared with the neighbouring block are read from memory again.
  const index_t budget = std::max<index_t>(1, (256 * 1024) / (g.kh * g.kw * st.length) - (g.kh - 1) * g.dh);
  const index_t rows = rows_per_task(g.h, g.n * g.groups, budget);
  const index_t blocks = ceil_div(g.h, rows);
  const index_t out_rows = (rows + (g.kh - 1) * g.dh) / g.sh + 1;  // output rows one block can touch
  at::parallel_for(0, g.n * g.groups * blocks, 1, [&](int64_t begin, int64_t end) {
    // w_st[(u, v)][row][t], go_st[c][row][t]: rows relative to the block's first output row
    std::vector<acc_t> w_st(g.kh * g.kw * out_rows * st.length), go_st(cpg * out_rows * st.length);
    std::vector<index_t> tap_rows, tap_u;
    for (int64_t task = begin; task < end; ++task) {
      const index_t block = task % blocks, ng = task / blocks, group = ng % g.groups, n = ng / g.groups;
      const index_t r0 = block * rows, r1 = std::min(g.h, r0 + rows);
      const index_t i_lo = std::max<index_t>(0, ceil_div(r0 + g.ph - (g.kh - 1) * g.dh, g.sh));
      const index_t i_hi = std::min(g.ho, floor_div(r1 - 1 + g.ph, g.sh) + 1);
      const scalar_t* w_ng = weight + ng * g.weight_plane();
      // tap by tap, each a contiguous run of rows; the next tap's run is prefetched meanwhile, as the
      // K*K runs are too many streams for the hardware prefetcher
      for (index_t uv = 0; uv < g.kh * g.kw; ++uv)
        for (index_t i = i_lo; i < i_hi; ++i) {
          acc_t* d = &w_st[(uv * out_rows + i - i_lo) * st.length];
          const scalar_t* src = w_ng + (uv * g.ho + i) * g.wo;
          if (uv + 1 < g.kh * g.kw) prefetch_row(src + g.ho * g.wo, g.wo);
          std::fill_n(d, st.base, acc_t(0));
          stage_row(d + st.base, src, g.wo, st.length - st.base);
        }
      for (index_t cl = 0; cl < cpg; ++cl)
        for (index_t i = i_lo; i < i_hi; ++i) {
          acc_t* d = &go_st[(cl * out_rows + i - i_lo) * st.length];
          std::fill_n(d, st.base, acc_t(0));
          stage_row(d + st.base, grad_out + ((n * g.c + group * cpg + cl) * g.ho + i) * g.wo, g.wo,
                    st.length - st.base);
        }
      const index_t go_channel_stride = out_rows * st.length;
      for (index_t r = r0; r < r1; ++r) {
        tap_rows.clear();
        tap_u.clear();
        for (index_t u = 0; u < g.kh; ++u) {
          index_t i;
          if (involution::output_for_input(r, u, g.ho, g.sh, g.ph, g.dh, &i)) {
            tap_rows.push_back((i - i_lo) * st.length + st.base);
            tap_u.push_back(u);
          }
        }
        // w_st row of tap (u, v) at output row offset: ((u*kw+v)*out_rows + ri)*length; fold it as
        // (u*kw+v)*out_rows*length + ri*length so tap_rows carries ri*length + base.
        const index_t row_len = out_rows * st.length;
        scalar_t* gx_row = grad_x + ((n * g.c + group * cpg) * g.h + r) * g.w;
        for (index_t phase = 0; phase < std::min(g.sw, g.w); ++phase) {
          const index_t m_here = ceil_div(g.w - phase, g.sw);
          for (index_t m0 = 0; m0 < m_here; m0 += B) {
            const index_t count = std::min<index_t>(B, m_here - m0);
            scalar_t* gx = gx_row + m0 * g.sw + phase;
            index_t c = 0;
            auto channels = [&](auto block) {  // blocks of CB channels share each weight vector
              constexpr int CB = decltype(block)::value;
              for (; c + CB <= cpg; c += CB)
                backward_input_block<CB, B>(w_st.data(), &go_st[c * go_channel_stride], st.taps[phase], tap_rows,
                                            tap_u, row_len, go_channel_stride, g.kw, m0, gx + c * g.h * g.w,
                                            g.h * g.w, g.sw, count);
            };
            channels(std::integral_constant<int, 8>());
            channels(std::integral_constant<int, 4>());
            channels(std::integral_constant<int, 1>());
          }
        }
      }
    }
  });
}

// ------------------------------------------------------------------------------------------- bindings

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
    const auto run = pick_lanes(g.wo) == 16 ? forward_kernel<16, scalar_t> : forward_kernel<8, scalar_t>;
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
    const auto run = pick_lanes(ceil_div(g.w, g.sw)) == 16 ? backward_input_kernel<16, scalar_t>
                                                           : backward_input_kernel<8, scalar_t>;
    run(grad_out.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(),
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
    const auto run =
        pick_lanes(g.wo) == 16 ? backward_weight_kernel<16, scalar_t> : backward_weight_kernel<8, scalar_t>;
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
