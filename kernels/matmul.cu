// Helpers of the matrix-product family. The products themselves go through cuBLAS (see
// engine/src/ops/matmul/cuda.rs); these kernels only prepare its output.

// Linear's bias: every row of the (rows x cols) output starts as `bias` (cols elements), and
// cuBLAS then accumulates x @ w^T onto it (beta = 1), as the CPU accumulates its gemm onto the
// bias. One grid-stride pass; the column is `i % cols` (cols > 0 whenever rows * cols > 0).
template <typename T>
__device__ __forceinline__ void bias_rows_body(const T* __restrict__ bias, T* __restrict__ out, i64 rows,
                                               i64 cols) {
    const i64 n = rows * cols;
    RCMCL_FOR_EACH(i, n) { out[i] = bias[i % cols]; }
}

extern "C" __global__ void bias_rows_f32(const float* bias, float* out, i64 rows, i64 cols) {
    bias_rows_body(bias, out, rows, cols);
}
extern "C" __global__ void bias_rows_f64(const double* bias, double* out, i64 rows, i64 cols) {
    bias_rows_body(bias, out, rows, cols);
}
