// Fast involution kernels for the shapes RedNet uses: kernel K = 3 or 7, stride S
// (1 or 2), dilation 1, padding (K-1)/2, 16 channels per group.
// Instantiated per (dtype, K, S, index type I) through name expressions; the
// tile sizes come from FastTile / FastInputTile, whose specialisations cuda.py
// generates (FAST_TILES, FAST_INPUT_STRIDE2_TILES) so that the launch and the
// kernels share one table.
//
// A block owns (sample, group, spatial tile): blockIdx.z = sample * groups + group,
// blockIdx.y / blockIdx.x = tile row / column, so the only division is one per block.
// The group's 16-channel input tile with its halo is staged in shared memory as the
// accumulation type, zero outside the image, so the tap loops test no borders. Each
// thread owns P adjacent pixels of one row for all 16 channels: a weight is read once
// and used 16 times, an input row segment is read once per (channel, tap row) and
// used by all K taps of all P pixels. The tap-row loop (u) is the hot loop; it is
// kept rolled (unroll 1) so that the accumulators stay in registers and the SASS has
// one loop to measure. I is int where every offset fits 32 bits, else long long.
// Every thread reaches every __syncthreads (no early return before it).
namespace involution {

template <int K, int S, bool Wide>
struct FastTile;  // TH x TW pixels per block, P pixels per thread (Wide: double accumulators)

#ifndef INVOLUTION_FAST_TILES
#error "cuda.kernel_source() prepends the FastTile table"
#endif
INVOLUTION_FAST_TILES

template <int K, int S, typename Acc>
struct FastConfig {
  typedef FastTile<K, S, sizeof(Acc) == 8> Tile;
  enum {
    C = 16,  // channels per group
    TH = Tile::TH,
    TW = Tile::TW,
    P = Tile::P,
    THREADS = TH * TW / P,
    PAD = (K - 1) / 2,
    IH = (TH - 1) * S + K,  // staged rows (tile + halo)
    IW = (TW - 1) * S + K,  // staged columns
    SPAN = (P - 1) * S + K  // staged values one thread reads per (channel, tap row)
  };
};

// Lanes per staged row: the power of two >= IW, at most the block.
template <int IW, int THREADS>
struct StageLanes {
  enum { POW2 = IW <= 8 ? 8 : IW <= 16 ? 16 : IW <= 32 ? 32 : IW <= 64 ? 64 : 128 };
  enum { LANES = POW2 < THREADS ? POW2 : THREADS };
};

// tile[c][r][q] = src[c, row0 + r, col0 + q] as Acc, zero outside [0, h) x [0, w). The block covers
// ROWS_PER_PASS staged rows of LANES columns at a time; a thread keeps its column(s) (offsets and column
// test computed once) and its rows (their tests in a bit mask), so the channel loop's unrolled body is a
// predicated load, a select and a shared store per element.
template <typename T, typename Acc, int C, int IH, int IW, int THREADS, typename I>
__device__ __forceinline__ void stage_tile(Acc* tile, const T* __restrict__ src, const I s_c, const I s_h,
                                           const I s_w, const int h, const int w, const int row0, const int col0) {
  enum {
    LANES = StageLanes<IW, THREADS>::LANES,
    ROWS_PER_PASS = THREADS / LANES,
    COLS = (IW + LANES - 1) / LANES,  // columns per thread
    ROWS = (IH + ROWS_PER_PASS - 1) / ROWS_PER_PASS  // rows per thread and channel
  };
  static_assert(THREADS % LANES == 0 && ROWS <= 32, "staging layout");
  const int lane = threadIdx.x % LANES, first = threadIdx.x / LANES;
  bool col_ok[COLS];
  I col_offset[COLS];
#pragma unroll
  for (int k = 0; k < COLS; ++k) {
    const int col = col0 + lane + k * LANES;
    col_ok[k] = lane + k * LANES < IW && (unsigned)col < (unsigned)w;
    col_offset[k] = (I)col * s_w;
  }
  unsigned row_ok = 0;  // bit k: staged row first + k * ROWS_PER_PASS exists in the tile and in the image
#pragma unroll
  for (int k = 0; k < ROWS; ++k) {
    const int r = first + k * ROWS_PER_PASS;
    row_ok |= (unsigned)(r < IH && (unsigned)(row0 + r) < (unsigned)h) << k;
  }
  const T* src_c = src + (I)(row0 + first) * s_h;  // dereferenced only inside the image
  Acc* tile_c = tile + first * IW + lane;
#pragma unroll 1
  for (int c = 0; c < C; ++c) {
#pragma unroll
    for (int k = 0; k < ROWS; ++k) {
      const bool in_row = (row_ok >> k) & 1u;
#pragma unroll
      for (int kc = 0; kc < COLS; ++kc) {
        const bool in_tile = (IH % ROWS_PER_PASS == 0 || first + k * ROWS_PER_PASS < IH) &&
                             ((kc + 1) * LANES <= IW || lane + kc * LANES < IW);
        if (in_tile)
          tile_c[k * ROWS_PER_PASS * IW + kc * LANES] =
              (in_row && col_ok[kc]) ? Scalar<T>::load(src_c[(I)(k * ROWS_PER_PASS) * s_h + col_offset[kc]]) : Acc(0);
      }
    }
    src_c += s_c;
    tile_c += IH * IW;
  }
}

#define INVOLUTION_FAST_PARAMS \
  const int groups, const int h, const int w, const int ho, const int wo

// out[n, c, i, j] = sum_{u,v} weight[n, g, u, v, i, j] * x[n, c, i*S + u - PAD, j*S + v - PAD]
template <typename T, int K, int S, typename I>
__global__ void __launch_bounds__(FastConfig<K, S, typename Scalar<T>::acc>::THREADS, 1)
    fast_forward_kernel(const T* __restrict__ x, const T* __restrict__ weight, T* __restrict__ out,
                        INVOLUTION_FAST_PARAMS, const I xs0, const I xs1, const I xs2, const I xs3, const I ws0,
                        const I ws1, const I ws2, const I ws3, const I ws4, const I ws5) {
  typedef typename Scalar<T>::acc Acc;
  typedef FastConfig<K, S, Acc> F;
  INVOLUTION_SHARED(Acc, tile, F::C * F::IH * F::IW);
  const int n = blockIdx.z / groups, g = blockIdx.z - n * groups;
  const int i0 = blockIdx.y * F::TH, j0 = blockIdx.x * F::TW;
  stage_tile<T, Acc, F::C, F::IH, F::IW, F::THREADS, I>(tile, x + (I)n * xs0 + (I)(g * F::C) * xs1, xs1, xs2, xs3, h,
                                                        w, i0 * S - F::PAD, j0 * S - F::PAD);
  __syncthreads();
  const int ty = threadIdx.x / (F::TW / F::P), tx = threadIdx.x - ty * (F::TW / F::P);
  const int i = i0 + ty, j = j0 + tx * F::P;
  // Pixels past the edge read a valid pixel's weights (clamped) and are not stored.
  const T* w_i = weight + (I)n * ws0 + (I)g * ws1 + (I)min(i, ho - 1) * ws4;
  I w_col[F::P];
#pragma unroll
  for (int p = 0; p < F::P; ++p) w_col[p] = (I)min(j + p, wo - 1) * ws5;
  Acc acc[F::C][F::P];
#pragma unroll
  for (int c = 0; c < F::C; ++c)
#pragma unroll
    for (int p = 0; p < F::P; ++p) acc[c][p] = 0;
  const Acc* t_thread = tile + (ty * S) * F::IW + tx * F::P * S;
#pragma unroll 1
  for (int u = 0; u < K; ++u) {
    const T* w_u = w_i + (I)u * ws2;
    Acc wv[K][F::P];
#pragma unroll
    for (int v = 0; v < K; ++v)
#pragma unroll
      for (int p = 0; p < F::P; ++p) wv[v][p] = Scalar<T>::load(w_u[(I)v * ws3 + w_col[p]]);
    const Acc* t_u = t_thread + u * F::IW;
#pragma unroll
    for (int c = 0; c < F::C; ++c) {
      Acc xv[F::SPAN];
#pragma unroll
      for (int q = 0; q < F::SPAN; ++q) xv[q] = t_u[c * (F::IH * F::IW) + q];
#pragma unroll
      for (int v = 0; v < K; ++v)
#pragma unroll
        for (int p = 0; p < F::P; ++p) acc[c][p] += wv[v][p] * xv[p * S + v];  // tap (u, v) of pixel p
    }
  }
  if (i < ho) {
    T* o = out + (((I)n * groups + g) * F::C * ho + i) * wo + j;
#pragma unroll
    for (int c = 0; c < F::C; ++c)
#pragma unroll
      for (int p = 0; p < F::P; ++p)
        if (j + p < wo) o[(I)c * ho * wo + p] = Scalar<T>::store(acc[c][p]);
  }
}

// Stride 1: grad_x[n, c, y, x] = sum_{a,b} weight[n, g, K-1-a, K-1-b, y+a-PAD, x+b-PAD] * go[n, c, y+a-PAD, x+b-PAD]
// (the forward's structure on flipped taps a = K-1-u, b = K-1-v); the grad_out tile is staged like the input
// tile, and a weight outside the output plane is a predicated zero.
template <typename T, int K, typename I>
__device__ __forceinline__ void input_stride1(const T* __restrict__ grad_out, const T* __restrict__ weight,
                                              T* __restrict__ grad_x, INVOLUTION_FAST_PARAMS, const I gs0, const I gs1,
                                              const I gs2, const I gs3, const I ws0, const I ws1, const I ws2,
                                              const I ws3, const I ws4, const I ws5) {
  typedef typename Scalar<T>::acc Acc;
  typedef FastConfig<K, 1, Acc> F;
  INVOLUTION_SHARED(Acc, tile, F::C * F::IH * F::IW);
  const int n = blockIdx.z / groups, g = blockIdx.z - n * groups;
  const int y0 = blockIdx.y * F::TH, x0 = blockIdx.x * F::TW;
  stage_tile<T, Acc, F::C, F::IH, F::IW, F::THREADS, I>(tile, grad_out + (I)n * gs0 + (I)(g * F::C) * gs1, gs1, gs2,
                                                        gs3, ho, wo, y0 - F::PAD, x0 - F::PAD);
  __syncthreads();
  const int ty = threadIdx.x / (F::TW / F::P), tx = threadIdx.x - ty * (F::TW / F::P);
  const int y = y0 + ty, x = x0 + tx * F::P;
  unsigned col_ok = 0;  // bit d: output column x + d - PAD exists
#pragma unroll
  for (int d = 0; d < F::SPAN; ++d) col_ok |= (unsigned)((unsigned)(x + d - F::PAD) < (unsigned)wo) << d;
  const T* w_ng = weight + (I)n * ws0 + (I)g * ws1 + (I)(x - F::PAD) * ws5;
  Acc acc[F::C][F::P];
#pragma unroll
  for (int c = 0; c < F::C; ++c)
#pragma unroll
    for (int p = 0; p < F::P; ++p) acc[c][p] = 0;
  const Acc* t_thread = tile + ty * F::IW + tx * F::P;
#pragma unroll 1
  for (int a = 0; a < K; ++a) {
    const int row = y + a - F::PAD;
    const bool row_ok = (unsigned)row < (unsigned)ho;
    const T* w_a = w_ng + (I)(K - 1 - a) * ws2 + (I)(row_ok ? row : 0) * ws4;
    Acc wv[K][F::P];
#pragma unroll
    for (int b = 0; b < K; ++b)
#pragma unroll
      for (int p = 0; p < F::P; ++p) {
        const bool ok = row_ok && ((col_ok >> (p + b)) & 1u);
        wv[b][p] = ok ? Scalar<T>::load(w_a[(I)(K - 1 - b) * ws3 + (I)(p + b) * ws5]) : Acc(0);
      }
    const Acc* t_a = t_thread + a * F::IW;
#pragma unroll
    for (int c = 0; c < F::C; ++c) {
      Acc gv[F::SPAN];
#pragma unroll
      for (int q = 0; q < F::SPAN; ++q) gv[q] = t_a[c * (F::IH * F::IW) + q];
#pragma unroll
      for (int b = 0; b < K; ++b)
#pragma unroll
        for (int p = 0; p < F::P; ++p) acc[c][p] += wv[b][p] * gv[p + b];
    }
  }
  if (y < h) {
    T* o = grad_x + (((I)n * groups + g) * F::C * h + y) * w + x;
#pragma unroll
    for (int c = 0; c < F::C; ++c)
#pragma unroll
      for (int p = 0; p < F::P; ++p)
        if (x + p < w) o[(I)c * h * w + p] = Scalar<T>::store(acc[c][p]);
  }
}

// Stride 2: input pixel (y, x) receives tap u only where y + PAD - u is even, so the taps a thread applies are
// fixed by the parity (PY, PX) of its pixels. A block of 4 parity classes (a class per group of warps) covers
// TH x TW input pixels; a thread owns P pixels of one parity, 2 apart in a row. Class (PY, PX) applies the taps
// u = AY + 2a, v = AX + 2b (compile time) and reads grad_out at i = y0/2 + ty + RY - a, j = x0/2 + tx*P + p + RX - b.
template <int K, bool Wide>
struct FastInputTile;  // stride-2 grad-input: TH x TW input pixels per block, P pixels per thread

#ifndef INVOLUTION_FAST_INPUT_TILES
#error "cuda.kernel_source() prepends the FastInputTile table"
#endif
INVOLUTION_FAST_INPUT_TILES

template <int K, typename Acc>
struct Stride2InputConfig {
  typedef FastInputTile<K, sizeof(Acc) == 8> Tile;
  enum {
    C = 16,
    TH = Tile::TH,
    TW = Tile::TW,
    P = Tile::P,
    PAD = (K - 1) / 2,
    CLASS_THREADS = (TH / 2) * (TW / 2 / P),
    THREADS = 4 * CLASS_THREADS,
    A0 = PAD & 1,  // first tap of row parity 0 / 1
    A1 = (1 + PAD) & 1,
    R0 = (PAD - A0) / 2,  // output offset of that tap
    R1 = (1 + PAD - A1) / 2,
    M0 = (K - 1 - A0) / 2,  // last tap index a
    M1 = (K - 1 - A1) / 2,
    LO = (M0 - R0 > M1 - R1 ? M0 - R0 : M1 - R1),  // grad_out halo before / after the block's outputs
    HI = (R0 > R1 ? R0 : R1),
    GH = TH / 2 + LO + HI,  // staged grad_out rows and columns
    GW = TW / 2 + LO + HI
  };
};

template <int K, int S, typename Acc>
struct FastInputThreads {
  enum { value = S == 1 ? (int)FastConfig<K, 1, Acc>::THREADS : (int)Stride2InputConfig<K, Acc>::THREADS };
};

template <typename T, int K, int PY, int PX, typename I>
__device__ __forceinline__ void input_stride2_class(const typename Scalar<T>::acc* tile, const T* __restrict__ w_ng,
                                                    T* __restrict__ gx_ng, const int local, const int y0, const int x0,
                                                    const int h, const int w, const int ho, const int wo, const I ws2,
                                                    const I ws3, const I ws4, const I ws5) {
  typedef typename Scalar<T>::acc Acc;
  typedef Stride2InputConfig<K, Acc> F;
  enum {
    AY = (PY + F::PAD) & 1,
    AX = (PX + F::PAD) & 1,
    RY = (PY + F::PAD - AY) / 2,
    RX = (PX + F::PAD - AX) / 2,
    NA = (K - 1 - AY) / 2 + 1,  // taps per column / row of this class
    NB = (K - 1 - AX) / 2 + 1,
    SPAN = F::P + NB - 1
  };
  const int ty = local / (F::TW / 2 / F::P), tx = local - ty * (F::TW / 2 / F::P);
  const int y = y0 + PY + 2 * ty, x = x0 + PX + 2 * tx * F::P;  // pixel p at x + 2p
  const int i_top = y0 / 2 + ty + RY, j_left = x0 / 2 + tx * F::P + RX - (NB - 1);
  unsigned col_ok = 0;  // bit d: output column j_left + d exists (d = p - b + NB - 1)
#pragma unroll
  for (int d = 0; d < SPAN; ++d) col_ok |= (unsigned)((unsigned)(j_left + d) < (unsigned)wo) << d;
  const T* w_base = w_ng + (I)AY * ws2 + (I)AX * ws3 + (I)j_left * ws5;
  Acc acc[F::C][F::P];
#pragma unroll
  for (int c = 0; c < F::C; ++c)
#pragma unroll
    for (int p = 0; p < F::P; ++p) acc[c][p] = 0;
  const Acc* t_thread = tile + (ty + RY + F::LO) * F::GW + tx * F::P + RX + F::LO - (NB - 1);
#pragma unroll 1
  for (int a = 0; a < NA; ++a) {
    const int i = i_top - a;
    const bool row_ok = (unsigned)i < (unsigned)ho;
    const T* w_a = w_base + (I)(2 * a) * ws2 + (I)(row_ok ? i : 0) * ws4;
    Acc wv[NB][F::P];
#pragma unroll
    for (int b = 0; b < NB; ++b)
#pragma unroll
      for (int p = 0; p < F::P; ++p) {
        const int d = p - b + NB - 1;
        const bool ok = row_ok && ((col_ok >> d) & 1u);
        wv[b][p] = ok ? Scalar<T>::load(w_a[(I)(2 * b) * ws3 + (I)d * ws5]) : Acc(0);
      }
    const Acc* t_a = t_thread - a * F::GW;
#pragma unroll
    for (int c = 0; c < F::C; ++c) {
      Acc gv[SPAN];
#pragma unroll
      for (int q = 0; q < SPAN; ++q) gv[q] = t_a[c * (F::GH * F::GW) + q];
#pragma unroll
      for (int b = 0; b < NB; ++b)
#pragma unroll
        for (int p = 0; p < F::P; ++p) acc[c][p] += wv[b][p] * gv[p - b + NB - 1];
    }
  }
  if (y < h) {
    T* o = gx_ng + (I)y * w + x;
#pragma unroll
    for (int c = 0; c < F::C; ++c)
#pragma unroll
      for (int p = 0; p < F::P; ++p)
        if (x + 2 * p < w) o[(I)c * h * w + 2 * p] = Scalar<T>::store(acc[c][p]);
  }
}

template <typename T, int K, typename I>
__device__ __forceinline__ void input_stride2(const T* __restrict__ grad_out, const T* __restrict__ weight,
                                              T* __restrict__ grad_x, INVOLUTION_FAST_PARAMS, const I gs0, const I gs1,
                                              const I gs2, const I gs3, const I ws0, const I ws1, const I ws2,
                                              const I ws3, const I ws4, const I ws5) {
  typedef typename Scalar<T>::acc Acc;
  typedef Stride2InputConfig<K, Acc> F;
  INVOLUTION_SHARED(Acc, tile, F::C * F::GH * F::GW);
  const int n = blockIdx.z / groups, g = blockIdx.z - n * groups;
  const int y0 = blockIdx.y * F::TH, x0 = blockIdx.x * F::TW;
  stage_tile<T, Acc, F::C, F::GH, F::GW, F::THREADS, I>(tile, grad_out + (I)n * gs0 + (I)(g * F::C) * gs1, gs1, gs2,
                                                        gs3, ho, wo, y0 / 2 - F::LO, x0 / 2 - F::LO);
  __syncthreads();
  const T* w_ng = weight + (I)n * ws0 + (I)g * ws1;
  T* gx_ng = grad_x + ((I)n * groups + g) * F::C * h * w;
  const int cls = threadIdx.x / F::CLASS_THREADS, local = threadIdx.x - cls * F::CLASS_THREADS;  // warp-uniform
  if (cls == 0)
    input_stride2_class<T, K, 0, 0, I>(tile, w_ng, gx_ng, local, y0, x0, h, w, ho, wo, ws2, ws3, ws4, ws5);
  else if (cls == 1)
    input_stride2_class<T, K, 0, 1, I>(tile, w_ng, gx_ng, local, y0, x0, h, w, ho, wo, ws2, ws3, ws4, ws5);
  else if (cls == 2)
    input_stride2_class<T, K, 1, 0, I>(tile, w_ng, gx_ng, local, y0, x0, h, w, ho, wo, ws2, ws3, ws4, ws5);
  else
    input_stride2_class<T, K, 1, 1, I>(tile, w_ng, gx_ng, local, y0, x0, h, w, ho, wo, ws2, ws3, ws4, ws5);
}

template <typename T, int K, int S, typename I>
__global__ void __launch_bounds__(FastInputThreads<K, S, typename Scalar<T>::acc>::value, 1)
    fast_backward_input_kernel(const T* __restrict__ grad_out, const T* __restrict__ weight, T* __restrict__ grad_x,
                               INVOLUTION_FAST_PARAMS, const I gs0, const I gs1, const I gs2, const I gs3, const I ws0,
                               const I ws1, const I ws2, const I ws3, const I ws4, const I ws5) {
  static_assert(S == 1 || S == 2, "strides 1 and 2");
  if constexpr (S == 1)
    input_stride1<T, K, I>(grad_out, weight, grad_x, groups, h, w, ho, wo, gs0, gs1, gs2, gs3, ws0, ws1, ws2, ws3,
                           ws4, ws5);
  else
    input_stride2<T, K, I>(grad_out, weight, grad_x, groups, h, w, ho, wo, gs0, gs1, gs2, gs3, ws0, ws1, ws2, ws3,
                           ws4, ws5);
}

// grad_weight[n, g, u, v, i, j] = sum_c go[n, c, i, j] * x[n, c, i*S + u - PAD, j*S + v - PAD]: the group's
// 16-channel sum inside one thread (no atomics); the thread's grad_out values stay in registers.
template <typename T, int K, int S, typename I>
__global__ void __launch_bounds__(FastConfig<K, S, typename Scalar<T>::acc>::THREADS, 1)
    fast_backward_weight_kernel(const T* __restrict__ grad_out, const T* __restrict__ x, T* __restrict__ grad_weight,
                                INVOLUTION_FAST_PARAMS, const I gs0, const I gs1, const I gs2, const I gs3,
                                const I xs0, const I xs1, const I xs2, const I xs3) {
  typedef typename Scalar<T>::acc Acc;
  typedef FastConfig<K, S, Acc> F;
  INVOLUTION_SHARED(Acc, tile, F::C * F::IH * F::IW);
  const int n = blockIdx.z / groups, g = blockIdx.z - n * groups;
  const int i0 = blockIdx.y * F::TH, j0 = blockIdx.x * F::TW;
  stage_tile<T, Acc, F::C, F::IH, F::IW, F::THREADS, I>(tile, x + (I)n * xs0 + (I)(g * F::C) * xs1, xs1, xs2, xs3, h,
                                                        w, i0 * S - F::PAD, j0 * S - F::PAD);
  const int ty = threadIdx.x / (F::TW / F::P), tx = threadIdx.x - ty * (F::TW / F::P);
  const int i = i0 + ty, j = j0 + tx * F::P;
  Acc gv[F::C][F::P];
  const T* go = grad_out + (I)n * gs0 + (I)(g * F::C) * gs1 + (I)min(i, ho - 1) * gs2;
#pragma unroll
  for (int c = 0; c < F::C; ++c)
#pragma unroll
    for (int p = 0; p < F::P; ++p)
      gv[c][p] = (i < ho && j + p < wo) ? Scalar<T>::load(go[(I)c * gs1 + (I)(j + p) * gs3]) : Acc(0);
  __syncthreads();
  const I plane = (I)ho * wo;
  T* gw = grad_weight + ((I)n * groups + g) * (K * K) * plane + (I)i * wo + j;
  const Acc* t_thread = tile + (ty * S) * F::IW + tx * F::P * S;
#pragma unroll 1
  for (int u = 0; u < K; ++u) {
    Acc acc[K][F::P];
#pragma unroll
    for (int v = 0; v < K; ++v)
#pragma unroll
      for (int p = 0; p < F::P; ++p) acc[v][p] = 0;
    const Acc* t_u = t_thread + u * F::IW;
#pragma unroll
    for (int c = 0; c < F::C; ++c) {
      Acc xv[F::SPAN];
#pragma unroll
      for (int q = 0; q < F::SPAN; ++q) xv[q] = t_u[c * (F::IH * F::IW) + q];
#pragma unroll
      for (int v = 0; v < K; ++v)
#pragma unroll
        for (int p = 0; p < F::P; ++p) acc[v][p] += gv[c][p] * xv[p * S + v];
    }
    T* gw_u = gw + (I)u * K * plane;
#pragma unroll
    for (int v = 0; v < K; ++v)
#pragma unroll
      for (int p = 0; p < F::P; ++p)
        if (i < ho && j + p < wo) gw_u[(I)v * plane + p] = Scalar<T>::store(acc[v][p]);
  }
}

}  // namespace involution
