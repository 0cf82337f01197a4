//! Matrix products through the `gemm` crate (runtime-dispatched AVX2/AVX-512/NEON kernels).
//!
//! Every Linear of the model is `y = x Wᵀ (+ b)` with `W` stored `[out, in]` as in PyTorch;
//! views carry a row and a column stride, so `Wᵀ` (and any strided head slice) is read in
//! place, never copied.

use gemm::Parallelism;

/// A strided matrix view: element `(r, c)` is `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A dense row-major `rows × cols` matrix.
    pub fn dense(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef::strided(data, rows, cols, cols)
    }

    /// A row-major `rows × cols` matrix whose rows start `row_stride` elements apart.
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        let view = MatRef {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        };
        assert!(view.fits(data.len()), "matrix view out of bounds");
        view
    }

    /// The transpose (same data).
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element lies inside `len` values; the arithmetic is checked, so sizes
    /// whose product wraps can never pass (the unsafe product below relies on this).
    fn fits(&self, len: usize) -> bool {
        self.rows == 0
            || self.cols == 0
            || last_index(self.rows, self.row_stride, self.cols, self.col_stride)
                .is_some_and(|last| last < len)
    }
}

/// `(rows − 1)·row_stride + (cols − 1)·col_stride`, or `None` when it overflows; rows and
/// cols ≥ 1.
fn last_index(rows: usize, row_stride: usize, cols: usize, col_stride: usize) -> Option<usize> {
    (rows - 1)
        .checked_mul(row_stride)?
        .checked_add((cols - 1).checked_mul(col_stride)?)
}

/// Whether a product may use the current rayon pool.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// Split large products over the pool (the caller is serial).
    Pool,
    /// Run on the calling thread (the caller is already parallel).
    Caller,
}

/// `dst (+)= a · b`, `dst` row-major `a.rows × b.cols` with rows `dst_stride` apart; with
/// `accumulate` the product is added to what `dst` holds.
pub fn matmul(
    a: MatRef<'_>,
    b: MatRef<'_>,
    dst: &mut [f32],
    dst_stride: usize,
    accumulate: bool,
    threads: Threads,
) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        last_index(m, dst_stride, n, 1).is_some_and(|last| last < dst.len()),
        "destination out of bounds"
    );
    if k == 0 {
        if !accumulate {
            dst.chunks_mut(dst_stride)
                .take(m)
                .for_each(|r| r[..n].fill(0.0));
        }
        return;
    }
    let pool = rayon::current_num_threads();
    let parallelism = if threads == Threads::Caller || pool <= 1 || m * n * k < 1 << 18 {
        Parallelism::None
    } else {
        Parallelism::Rayon(pool)
    };
    // SAFETY: the views' bounds were checked when they were made and `dst`'s above; `dst` is
    // exclusively borrowed so it cannot alias the shared inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_and_transposed_products_match_loops() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut dst = vec![1.0f32; m * n];
        matmul(
            MatRef::dense(&a, m, k),
            MatRef::dense(&w, n, k).t(),
            &mut dst,
            n,
            true,
            Threads::Pool,
        );
        for r in 0..m {
            for c in 0..n {
                let expect: f32 = 1.0 + (0..k).map(|i| a[r * k + i] * w[c * k + i]).sum::<f32>();
                assert!((dst[r * n + c] - expect).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn views_whose_extent_wraps_are_refused() {
        let data = [0.0f32; 4];
        // (2^62 + 1 − 1)·4 wraps to 0 in 64 bits: it must not pass as "in bounds".
        let wraps = std::panic::catch_unwind(|| MatRef::strided(&data, (1 << 62) + 1, 1, 4));
        assert!(wraps.is_err());
        assert_eq!(last_index((1 << 62) + 1, 4, 1, 1), None);
        assert_eq!(last_index(2, 3, 2, 1), Some(4));
        let mut dst = [0.0f32; 4];
        let a = MatRef::dense(&data, 2, 2);
        let wrapped_dst = std::panic::catch_unwind(move || {
            matmul(a, a, &mut dst, usize::MAX / 2, false, Threads::Caller)
        });
        assert!(wrapped_dst.is_err());
    }
}
