// Layout copies: broadcast_to, permute / transpose, narrow (crop), pad and concat.
//
// These kernels only move elements, so they are written per element width, never per dtype:
// `_b4` moves 4-byte words (f32), `_b8` 8-byte words (f64 and i64). Bits are copied unchanged
// (NaN payloads included).
//
// Every kernel writes its output in order (thread i writes element i of a grid-stride loop, or a
// tile's rows): writes are coalesced. Index arithmetic is 32-bit when the engine says every
// index and offset fits (`wide == 0`: the output and source both have fewer than 2^32 elements),
// 64-bit otherwise; 32-bit division is several times cheaper.
//
// The engine first simplifies each layout (drops size-1 dimensions, merges dimensions that are
// contiguous in both source and destination), so the kernels take at most 8 dimensions.
//
// Kernel signatures must match `engine/src/ops/layout/cuda.rs`.

#define RCMCL_MAX_DIMS 8

// Kernel parameter lists of 8 values; unused trailing entries are ignored.
#define RCMCL_ARGS8(p) i64 p##0, i64 p##1, i64 p##2, i64 p##3, i64 p##4, i64 p##5, i64 p##6, i64 p##7
#define RCMCL_SET8(dst, p)                                                                       \
    dst[0] = p##0; dst[1] = p##1; dst[2] = p##2; dst[3] = p##3;                                  \
    dst[4] = p##4; dst[5] = p##5; dst[6] = p##6; dst[7] = p##7;

typedef unsigned int w4;        // a 4-byte element
typedef unsigned long long w8;  // an 8-byte element

// ----- generic strided copy -------------------------------------------------------------------

// An output of `rank` dimensions (outermost first) and, for each, the source's element stride
// (0 along a broadcast dimension).
struct Strided {
    int rank;
    i64 dim[RCMCL_MAX_DIMS];
    i64 stride[RCMCL_MAX_DIMS];
};

// The source offset of output element `i`. The outermost dimension needs no division.
template <typename I> __device__ __forceinline__ I strided_offset(I i, const Strided& s) {
    I off = 0;
#pragma unroll
    for (int k = RCMCL_MAX_DIMS - 1; k >= 1; --k) {
        if (k < s.rank) {
            const I d = (I)s.dim[k];
            const I q = i / d;
            off += (i - q * d) * (I)s.stride[k];
            i = q;
        }
    }
    return off + i * (I)s.stride[0];
}

template <typename I, typename T>
__device__ void strided_copy_loop(const T* __restrict__ src, T* __restrict__ out, i64 n, const Strided& s) {
    RCMCL_FOR_EACH(i, n) out[i] = src[strided_offset<I>((I)i, s)];
}

// out[i] = src[offset + sum_k c_k(i) * stride_k]: permute (strides permuted), narrow (an offset
// into the input, the input's strides), broadcast_to (stride 0 along broadcast dimensions).
#define RCMCL_STRIDED_COPY(T, NAME)                                                              \
    extern "C" __global__ void NAME(const T* src, T* out, i64 offset, i64 n, int wide, int rank,   \
                                    RCMCL_ARGS8(d), RCMCL_ARGS8(s)) {                            \
        Strided st;                                                                              \
        st.rank = rank;                                                                          \
        RCMCL_SET8(st.dim, d)                                                                    \
        RCMCL_SET8(st.stride, s)                                                                 \
        if (wide) strided_copy_loop<u64>(src + offset, out, n, st);                              \
        else strided_copy_loop<u32>(src + offset, out, n, st);                                   \
    }

RCMCL_STRIDED_COPY(w4, strided_copy_b4)
RCMCL_STRIDED_COPY(w8, strided_copy_b8)

// ----- tiled permute (transpose) --------------------------------------------------------------

// A permute whose output's innermost dimension is not the input's innermost one: a plain copy
// would read (or write) with a stride. Each block moves 32 x 32 tiles through shared memory:
// it reads a tile along the input's contiguous dimension (output axis `ax`, the tile's x) and
// writes it along the output's contiguous dimension (the last output axis, the tile's y), so
// both reads and writes are coalesced. The extra column (+1) puts the 32 elements of a tile
// column in 32 different banks, so reading a column is free of bank conflicts. Every other
// output axis is a batch axis; tiles are numbered x fastest, then y, then batch.
//
// Launch: 256 threads (32 x 8: each thread moves 4 elements of a tile), any number of blocks
// (grid-stride over tiles; the loop bound is the same for every thread of a block, so the
// barriers are in uniform control flow).
#define TILE 32
#define TILE_ROWS 8

struct Tiled {
    int rank;
    int ax;  // the output axis along which the input is contiguous (input stride 1)
    i64 dim[RCMCL_MAX_DIMS];
    i64 stride[RCMCL_MAX_DIMS];  // input strides of the output axes
};

template <typename I, typename T>
__device__ __forceinline__ void permute_tiled_body(const T* __restrict__ src, T* __restrict__ out, const Tiled& p,
                                                   T (*tile)[TILE + 1]) {
    const int rank = p.rank, ax = p.ax, ay = p.rank - 1;
    // Output strides (row-major over dim).
    I ostride[RCMCL_MAX_DIMS];
    I acc = 1;
#pragma unroll
    for (int k = RCMCL_MAX_DIMS - 1; k >= 0; --k) {
        if (k < rank) {
            ostride[k] = acc;
            acc *= (I)p.dim[k];
        } else {
            ostride[k] = 0;
        }
    }
    const I dx = (I)p.dim[ax], dy = (I)p.dim[ay];
    const I sy = (I)p.stride[ay];  // input stride along y (along x it is 1)
    const I osx = ostride[ax];     // output stride along x (along y it is 1)
    const i64 tiles_x = ((i64)dx + TILE - 1) / TILE, tiles_y = ((i64)dy + TILE - 1) / TILE;
    i64 batch = 1;
#pragma unroll
    for (int k = 0; k < RCMCL_MAX_DIMS; ++k)
        if (k < rank && k != ax && k != ay) batch *= p.dim[k];
    const i64 tiles = tiles_x * tiles_y * batch;
    const int tx = threadIdx.x % TILE, ty = threadIdx.x / TILE;
    for (i64 t = blockIdx.x; t < tiles; t += gridDim.x) {
        i64 rest = t;
        const I x0 = (I)(rest % tiles_x) * TILE;
        rest /= tiles_x;
        const I y0 = (I)(rest % tiles_y) * TILE;
        rest /= tiles_y;
        I in_base = 0, out_base = 0;
        I b = (I)rest;
#pragma unroll
        for (int k = RCMCL_MAX_DIMS - 1; k >= 0; --k) {
            if (k < rank && k != ax && k != ay) {
                const I d = (I)p.dim[k];
                const I q = b / d;
                const I c = b - q * d;
                b = q;
                in_base += c * (I)p.stride[k];
                out_base += c * ostride[k];
            }
        }
        // Read along x (input-contiguous): tile[y - y0][x - x0].
#pragma unroll
        for (int j = 0; j < TILE; j += TILE_ROWS) {
            const I x = x0 + tx, y = y0 + ty + j;
            if (x < dx && y < dy) tile[ty + j][tx] = src[in_base + x + y * sy];
        }
        __syncthreads();
        // Write along y (output-contiguous).
#pragma unroll
        for (int j = 0; j < TILE; j += TILE_ROWS) {
            const I x = x0 + ty + j, y = y0 + tx;
            if (x < dx && y < dy) out[out_base + x * osx + y] = tile[tx][ty + j];
        }
        __syncthreads();  // the next tile overwrites `tile`
    }
}

#define RCMCL_PERMUTE_TILED(T, NAME)                                                             \
    extern "C" __global__ void NAME(const T* src, T* out, int wide, int rank, int ax,              \
                                    RCMCL_ARGS8(d), RCMCL_ARGS8(s)) {                            \
        /* One tile for both index widths (declared here, not in the template body, so the */  \
        /* two instantiations share it).                                                    */  \
        __shared__ T tile[TILE][TILE + 1];                                                       \
        Tiled p;                                                                                 \
        p.rank = rank;                                                                           \
        p.ax = ax;                                                                               \
        RCMCL_SET8(p.dim, d)                                                                     \
        RCMCL_SET8(p.stride, s)                                                                  \
        if (wide) permute_tiled_body<u64>(src, out, p, tile);                                    \
        else permute_tiled_body<u32>(src, out, p, tile);                                         \
    }

RCMCL_PERMUTE_TILED(w4, permute_tiled_b4)
RCMCL_PERMUTE_TILED(w8, permute_tiled_b8)

// ----- pad ------------------------------------------------------------------------------------

// An input of dims `in` placed at `lo` inside an output of dims `out` (outermost first; the
// engine merges each unpadded dimension into the one before it). Every output element is
// written once: the input's element, or `fill`.
struct Pad {
    int rank;
    i64 out[RCMCL_MAX_DIMS];
    i64 lo[RCMCL_MAX_DIMS];
    i64 in[RCMCL_MAX_DIMS];
};

template <typename I, typename T>
__device__ void pad_loop(const T* __restrict__ src, T* __restrict__ out, i64 n, T fill, const Pad& p) {
    RCMCL_FOR_EACH(i, n) {
        I r = (I)i, off = 0, step = 1;
        bool inside = true;
#pragma unroll
        for (int k = RCMCL_MAX_DIMS - 1; k >= 0; --k) {
            if (k < p.rank) {
                const I d = (I)p.out[k];
                const I q = r / d;
                const I c = r - q * d;
                r = q;
                const I lo = (I)p.lo[k], len = (I)p.in[k];
                // Unsigned: c < lo wraps to a huge value and fails the test too.
                const I ci = c - lo;
                inside = inside && c >= lo && ci < len;
                off += ci * step;
                step *= len;
            }
        }
        out[i] = inside ? src[off] : fill;
    }
}

// `fill` holds the padding value's bits (the low 32 for `_b4`).
#define RCMCL_PAD(T, NAME)                                                                       \
    extern "C" __global__ void NAME(const T* src, T* out, i64 n, w8 fill, int wide, int rank,      \
                                    RCMCL_ARGS8(o), RCMCL_ARGS8(l), RCMCL_ARGS8(d)) {            \
        Pad p;                                                                                   \
        p.rank = rank;                                                                           \
        RCMCL_SET8(p.out, o)                                                                     \
        RCMCL_SET8(p.lo, l)                                                                      \
        RCMCL_SET8(p.in, d)                                                                      \
        if (wide) pad_loop<u64>(src, out, n, (T)fill, p);                                        \
        else pad_loop<u32>(src, out, n, (T)fill, p);                                             \
    }

RCMCL_PAD(w4, pad_b4)
RCMCL_PAD(w8, pad_b8)

// ----- concat ---------------------------------------------------------------------------------

// Concat seen as `outer` output rows of `block` elements: input t contributes a run of `run_t`
// contiguous elements to each row (its size along the axis times the inner size). One launch
// writes the columns [col0, col0 + width) of every row, taken from up to 8 consecutive inputs
// (the engine launches once per group of 8), so any number of inputs needs no device-side table.
#define RCMCL_CONCAT_GROUP 8

template <typename I, typename T>
__device__ void concat_loop(T* __restrict__ out, i64 outer, i64 block, i64 col0, i64 width, int count,
                            const T* const (&src)[RCMCL_CONCAT_GROUP], const i64 (&run)[RCMCL_CONCAT_GROUP]) {
    const i64 n = outer * width;
    RCMCL_FOR_EACH(i, n) {
        const I o = (I)i / (I)width;
        const I c = (I)i - o * (I)width;
        // The input whose columns hold c: a short linear scan (count <= 8).
        int t = 0;
        I start = 0;
        while (t + 1 < count && c >= start + (I)run[t]) {
            start += (I)run[t];
            ++t;
        }
        out[o * (I)block + (I)col0 + c] = src[t][o * (I)run[t] + (c - start)];
    }
}

#define RCMCL_CONCAT(T, NAME)                                                                    \
    extern "C" __global__ void NAME(T* out, i64 outer, i64 block, i64 col0, i64 width, int wide,   \
                                    int count, const T* p0, const T* p1, const T* p2, const T* p3, \
                                    const T* p4, const T* p5, const T* p6, const T* p7,          \
                                    RCMCL_ARGS8(r)) {                                            \
        const T* src[RCMCL_CONCAT_GROUP] = {p0, p1, p2, p3, p4, p5, p6, p7};                     \
        i64 run[RCMCL_CONCAT_GROUP];                                                             \
        RCMCL_SET8(run, r)                                                                       \
        if (wide) concat_loop<u64>(out, outer, block, col0, width, count, src, run);             \
        else concat_loop<u32>(out, outer, block, col0, width, count, src, run);                  \
    }

RCMCL_CONCAT(w4, concat_b4)
RCMCL_CONCAT(w8, concat_b8)
