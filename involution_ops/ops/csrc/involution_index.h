// Index arithmetic of involution, shared by the CPU kernel (C++) and the CUDA
// kernels (NVRTC): the CPU tests therefore exercise the same functions the
// GPU runs. Header-only, no includes, so NVRTC needs no system headers.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define INVOLUTION_HD __host__ __device__ __forceinline__
#else
#define INVOLUTION_HD inline
#endif

namespace involution {

typedef long long index_t;

// floor(a / b) for b > 0 and any sign of a (C++ division truncates toward zero).
INVOLUTION_HD index_t floor_div(index_t a, index_t b) {
  const index_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

INVOLUTION_HD index_t ceil_div(index_t a, index_t b) { return -floor_div(-a, b); }

// Output size along one dimension: floor((in + 2p - d*(k-1) - 1) / s) + 1.
INVOLUTION_HD index_t output_size(index_t in, index_t k, index_t s, index_t p, index_t d) {
  return floor_div(in + 2 * p - d * (k - 1) - 1, s) + 1;
}

// Input coordinate read by output position `o` at kernel tap `t` (may be outside the image).
INVOLUTION_HD index_t input_coord(index_t o, index_t t, index_t s, index_t p, index_t d) {
  return o * s + t * d - p;
}

INVOLUTION_HD bool inside(index_t coord, index_t size) { return coord >= 0 && coord < size; }

// Output positions [*lo, *hi) whose tap `t` reads inside [0, in_size); empty when *lo == *hi.
INVOLUTION_HD void valid_output_range(index_t t, index_t in_size, index_t out_size, index_t s, index_t p,
                                      index_t d, index_t* lo, index_t* hi) {
  const index_t offset = t * d - p;
  index_t first = ceil_div(-offset, s);
  index_t last = floor_div(in_size - 1 - offset, s) + 1;
  first = first < 0 ? 0 : first;
  last = last > out_size ? out_size : last;
  *lo = first;
  *hi = last < first ? first : last;
}

// The output position `*o` whose tap `t` reads input coordinate `in`, if there is one.
INVOLUTION_HD bool output_for_input(index_t in, index_t t, index_t out_size, index_t s, index_t p, index_t d,
                                    index_t* o) {
  const index_t numerator = in + p - t * d;
  if (numerator < 0 || numerator % s != 0) return false;
  *o = numerator / s;
  return *o < out_size;
}

}  // namespace involution
