// CUDA involution kernels, compiled at run time by NVRTC (through CuPy), one
// module per dtype. No CUDA headers are needed: half and bfloat16 are handled
// as raw 16-bit storage converted with PTX / bit arithmetic, so the source
// compiles with any NVRTC (cupy-cuda12x, cupy-cuda13x) without a toolkit.
// Accumulation is in float (double for double). Every input is read through
// its own strides; outputs are contiguous. Index arithmetic: involution_index.h,
// prepended by the loader (and compiled into the CPU kernel as well).
// Without __CUDA_ARCH__ (the tests' host emulation) the half conversions come
// from functions the including file provides.
#include "involution_index.h"

#ifndef INVOLUTION_SHARED  // the host emulation maps it to one block-wide buffer
#define INVOLUTION_SHARED(type, name, count) __shared__ type name[count]
#endif

namespace involution {

struct half_t {
  unsigned short bits;
};
struct bf16_t {
  unsigned short bits;
};

template <typename T>
struct Scalar;

template <>
struct Scalar<float> {
  typedef float acc;
  static __device__ __forceinline__ float load(float v) { return v; }
  static __device__ __forceinline__ float store(float v) { return v; }
};

template <>
struct Scalar<double> {
  typedef double acc;
  static __device__ __forceinline__ double load(double v) { return v; }
  static __device__ __forceinline__ double store(double v) { return v; }
};

template <>
struct Scalar<half_t> {
  typedef float acc;
  static __device__ __forceinline__ float load(half_t v) {
#ifdef __CUDA_ARCH__
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
    return f;
#else  // host emulation of the kernels in the tests
    return involution_host_half_to_float(v.bits);
#endif
  }
  static __device__ __forceinline__ half_t store(float v) {
    half_t h;
#ifdef __CUDA_ARCH__
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(v));
#else
    h.bits = involution_host_float_to_half(v);
#endif
    return h;
  }
};

template <>
struct Scalar<bf16_t> {
  typedef float acc;
  static __device__ __forceinline__ float load(bf16_t v) { return __uint_as_float(((unsigned int)v.bits) << 16); }
  static __device__ __forceinline__ bf16_t store(float v) {
    unsigned int u = __float_as_uint(v);
    bf16_t b;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      b.bits = (unsigned short)((u >> 16) | 0x40u);  // quiet NaN
    } else {
      u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
      b.bits = (unsigned short)(u >> 16);
    }
    return b;
  }
};

struct Shape {
  index_t n, c, h, w, groups, kh, kw, ho, wo, sh, sw, ph, pw, dh, dw;
};

// Geometry as plain scalar kernel arguments (CuPy passes scalars, not structs).
#define INVOLUTION_SHAPE_PARAMS \
  const index_t shape_n, const index_t shape_c, const index_t shape_h, const index_t shape_w, \
      const index_t shape_groups, const index_t shape_kh, const index_t shape_kw, \
      const index_t shape_ho, const index_t shape_wo, const index_t shape_sh, \
      const index_t shape_sw, const index_t shape_ph, const index_t shape_pw, \
      const index_t shape_dh, const index_t shape_dw
#define INVOLUTION_SHAPE \
  {shape_n, shape_c, shape_h, shape_w, shape_groups, shape_kh, shape_kw, shape_ho, \
   shape_wo, shape_sh, shape_sw, shape_ph, shape_pw, shape_dh, shape_dw}

#define INVOLUTION_GRID_STRIDE_LOOP(idx, total) \
  for (index_t idx = (index_t)blockIdx.x * blockDim.x + threadIdx.x; idx < (total); idx += (index_t)blockDim.x * gridDim.x)

// out[n, c, i, j]: one thread per output element.
template <typename T>
__global__ void forward_kernel(const T* __restrict__ x, const T* __restrict__ weight, T* __restrict__ out,
                               INVOLUTION_SHAPE_PARAMS, const index_t xs0, const index_t xs1, const index_t xs2,
                               const index_t xs3, const index_t ws0, const index_t ws1, const index_t ws2,
                               const index_t ws3, const index_t ws4, const index_t ws5) {
  typedef typename Scalar<T>::acc acc_t;
  const Shape s = INVOLUTION_SHAPE;
  const index_t total = s.n * s.c * s.ho * s.wo;
  const index_t cpg = s.c / s.groups;
  INVOLUTION_GRID_STRIDE_LOOP(idx, total) {
    const index_t j = idx % s.wo, i = (idx / s.wo) % s.ho, c = (idx / (s.wo * s.ho)) % s.c;
    const index_t n = idx / (s.wo * s.ho * s.c), g = c / cpg;
    const T* x_nc = x + n * xs0 + c * xs1;
    const T* w_ng = weight + n * ws0 + g * ws1 + i * ws4 + j * ws5;
    acc_t acc = 0;
    for (index_t u = 0; u < s.kh; ++u) {
      const index_t row = input_coord(i, u, s.sh, s.ph, s.dh);
      if (!inside(row, s.h)) continue;
      for (index_t v = 0; v < s.kw; ++v) {
        const index_t col = input_coord(j, v, s.sw, s.pw, s.dw);
        if (!inside(col, s.w)) continue;
        acc += Scalar<T>::load(w_ng[u * ws2 + v * ws3]) * Scalar<T>::load(x_nc[row * xs2 + col * xs3]);
      }
    }
    out[idx] = Scalar<T>::store(acc);
  }
}

// grad_x[n, c, h, w]: one thread per input element, gathering from the outputs that read it.
template <typename T>
__global__ void backward_input_kernel(const T* __restrict__ grad_out, const T* __restrict__ weight,
                                      T* __restrict__ grad_x, INVOLUTION_SHAPE_PARAMS, const index_t gs0, const index_t gs1,
                                      const index_t gs2, const index_t gs3, const index_t ws0, const index_t ws1,
                                      const index_t ws2, const index_t ws3, const index_t ws4, const index_t ws5) {
  typedef typename Scalar<T>::acc acc_t;
  const Shape s = INVOLUTION_SHAPE;
  const index_t total = s.n * s.c * s.h * s.w;
  const index_t cpg = s.c / s.groups;
  INVOLUTION_GRID_STRIDE_LOOP(idx, total) {
    const index_t col = idx % s.w, row = (idx / s.w) % s.h, c = (idx / (s.w * s.h)) % s.c;
    const index_t n = idx / (s.w * s.h * s.c), g = c / cpg;
    const T* go_nc = grad_out + n * gs0 + c * gs1;
    const T* w_ng = weight + n * ws0 + g * ws1;
    acc_t acc = 0;
    for (index_t u = 0; u < s.kh; ++u) {
      index_t i;
      if (!output_for_input(row, u, s.ho, s.sh, s.ph, s.dh, &i)) continue;
      for (index_t v = 0; v < s.kw; ++v) {
        index_t j;
        if (!output_for_input(col, v, s.wo, s.sw, s.pw, s.dw, &j)) continue;
        acc += Scalar<T>::load(w_ng[u * ws2 + v * ws3 + i * ws4 + j * ws5]) *
               Scalar<T>::load(go_nc[i * gs2 + j * gs3]);
      }
    }
    grad_x[idx] = Scalar<T>::store(acc);
  }
}

// grad_weight[n, g, u, v, i, j]: one thread per weight element, summing over the group's channels.
template <typename T>
__global__ void backward_weight_kernel(const T* __restrict__ grad_out, const T* __restrict__ x,
                                       T* __restrict__ grad_weight, INVOLUTION_SHAPE_PARAMS, const index_t gs0,
                                       const index_t gs1, const index_t gs2, const index_t gs3, const index_t xs0,
                                       const index_t xs1, const index_t xs2, const index_t xs3) {
  typedef typename Scalar<T>::acc acc_t;
  const Shape s = INVOLUTION_SHAPE;
  const index_t total = s.n * s.groups * s.kh * s.kw * s.ho * s.wo;
  const index_t cpg = s.c / s.groups;
  INVOLUTION_GRID_STRIDE_LOOP(idx, total) {
    const index_t j = idx % s.wo, i = (idx / s.wo) % s.ho, v = (idx / (s.wo * s.ho)) % s.kw;
    const index_t u = (idx / (s.wo * s.ho * s.kw)) % s.kh, ng = idx / (s.wo * s.ho * s.kw * s.kh);
    const index_t g = ng % s.groups, n = ng / s.groups;
    const index_t row = input_coord(i, u, s.sh, s.ph, s.dh), col = input_coord(j, v, s.sw, s.pw, s.dw);
    acc_t acc = 0;
    if (inside(row, s.h) && inside(col, s.w)) {
      const T* go_n = grad_out + n * gs0 + i * gs2 + j * gs3;
      const T* x_n = x + n * xs0 + row * xs2 + col * xs3;
      for (index_t c = g * cpg; c < (g + 1) * cpg; ++c)
        acc += Scalar<T>::load(go_n[c * gs1]) * Scalar<T>::load(x_n[c * xs1]);
    }
    grad_weight[idx] = Scalar<T>::store(acc);
  }
}

}  // namespace involution

#include "involution_fast.cuh"
