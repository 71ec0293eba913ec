/* Fused CPU kernels for the 2-D stencil operators of datagen.linalg (loaded by fused.py).
 *
 * Each kernel treats a batch of grids stored contiguously row by row (row r of an n0 x n1 batch
 * is grid r / n0, grid row r % n0), split over `threads` OpenMP threads (torch's own OpenMP
 * runtime once torch is loaded: the library shares its soname), and makes one pass over its
 * operands, where eager torch makes one pass per multiply-add. The stencil kernels' modes:
 * 0: out = A x; 1: out = f - A x; 2: out = x + w (f - A x), one damped-Jacobi sweep. Values
 * outside the grid are zero (Dirichlet). The file is compiled once for float and once for
 * double (it includes itself with REAL and SUFFIX defined).
 */
#ifndef REAL
#include <float.h>
#include <stdlib.h>
#define ABS(x) ((x) < 0 ? -(x) : (x))

/* The coarse columns J < nc1 whose fine node 2J + c lies inside a row of n1 nodes. */
static long columns_inside(long n1, long c, long nc1) {
    long m = (n1 - c + 1) / 2;
    return m < nc1 ? m : nc1;
}

#define REAL float
#define EPS FLT_EPSILON
#define SUFFIX(name) name##_f32
#include __FILE__
#undef REAL
#undef EPS
#undef SUFFIX

#define REAL double
#define EPS DBL_EPSILON
#define SUFFIX(name) name##_f64
#include __FILE__
#undef REAL
#undef EPS
#undef SUFFIX

#else

/* o holds A x for the row; turn it into the mode's output. */
static void SUFFIX(finish)(long n1, int mode, const REAL *x, const REAL *f, const REAL *w,
                           REAL *o) {
    if (mode == 1) {
        for (long j = 0; j < n1; j++) o[j] = f[j] - o[j];
    } else if (mode == 2) {
        for (long j = 0; j < n1; j++) o[j] = x[j] + w[j] * (f[j] - o[j]);
    }
}

/* out += c * u along a row, the neighbour at column offset dj (-1, 0, 1) inside the row. */
static void SUFFIX(add_shifted)(long n1, int dj, const REAL *c, const REAL *u, REAL *o) {
    long j0 = dj < 0 ? 1 : 0, j1 = dj > 0 ? n1 - 1 : n1;
    for (long j = j0; j < j1; j++) o[j] += c[j] * u[j + dj];
}

/* The Darcy 5-point operator of datagen.problems.darcy.physics.DarcyOperator:
 * (A x)_ij = d_ij x_ij - wx_{i-1,j} x_{i-1,j} - wx_ij x_{i+1,j} - wy_{i,j-1} x_{i,j-1}
 *            - wy_ij x_{i,j+1}; d (B, n0, n1), wx (B, n0 - 1, n1), wy (B, n0, n1 - 1). */
void SUFFIX(darcy5)(long rows, long n0, long n1, int mode, int threads, const REAL *x,
                    const REAL *f, const REAL *w, const REAL *d, const REAL *wx, const REAL *wy,
                    REAL *out) {
    REAL *zeros = calloc(n1, sizeof(REAL)); /* the couplings and values beyond the first and
                                               last rows, so that every row is one loop */
    if (!zeros) return;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < rows; r++) {
        long b = r / n0, i = r % n0;
        const REAL *restrict xr = x + r * n1, *restrict dr = d + r * n1;
        const REAL *restrict fr = f + r * n1, *restrict wr = w + r * n1;
        const REAL *restrict wyr = wy + r * (n1 - 1);
        const REAL *restrict up = i > 0 ? xr - n1 : zeros;
        const REAL *restrict c_up = i > 0 ? wx + (b * (n0 - 1) + i - 1) * n1 : zeros;
        const REAL *restrict down = i < n0 - 1 ? xr + n1 : zeros;
        const REAL *restrict c_down = i < n0 - 1 ? wx + (b * (n0 - 1) + i) * n1 : zeros;
        REAL *restrict o = out + r * n1;
#define AX(j) (dr[j] * xr[j] - c_up[j] * up[j] - c_down[j] * down[j])
#define PUT(j, ax)                                                                             \
    o[j] = mode == 0 ? (ax) : mode == 1 ? fr[j] - (ax) : xr[j] + wr[j] * (fr[j] - (ax))
        if (n1 == 1) {
            PUT(0, AX(0));
            continue;
        }
        PUT(0, AX(0) - wyr[0] * xr[1]);
        for (long j = 1; j < n1 - 1; j++) PUT(j, AX(j) - wyr[j - 1] * xr[j - 1] - wyr[j] * xr[j + 1]);
        PUT(n1 - 1, AX(n1 - 1) - wyr[n1 - 2] * xr[n1 - 2]);
#undef AX
#undef PUT
    }
    free(zeros);
}

/* The 9-point operator of datagen.linalg.multigrid.StencilOperator:
 * (A x)_ij = sum_{di, dj} s[b, 1 + di, 1 + dj, i, j] x_{i + di, j + dj}, s (B, 3, 3, n0, n1). */
void SUFFIX(stencil9)(long rows, long n0, long n1, int mode, int threads, const REAL *x,
                      const REAL *f, const REAL *w, const REAL *s, REAL *out) {
    long plane = n0 * n1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < rows; r++) {
        long b = r / n0, i = r % n0;
        const REAL *xr = x + r * n1, *sr = s + b * 9 * plane + i * n1;
        REAL *o = out + r * n1;
        const REAL *centre = sr + 4 * plane;
        for (long j = 0; j < n1; j++) o[j] = centre[j] * xr[j];
        for (int di = -1; di <= 1; di++) {
            if ((di < 0 && i == 0) || (di > 0 && i == n0 - 1)) continue;
            for (int dj = -1; dj <= 1; dj++) {
                if (di == 0 && dj == 0) continue;
                SUFFIX(add_shifted)(n1, dj, sr + ((1 + di) * 3 + 1 + dj) * plane, xr + di * n1, o);
            }
        }
        SUFFIX(finish)(n1, mode, xr, f + r * n1, w + r * n1, o);
    }
}

/* The transpose of operator-dependent prolongation (datagen.linalg.multigrid.
 * OperatorInterpolation.restrict): out[b, I, J] = sum_{a, c} w[b, a, c, I, J] fine[b, 2I + a, 2J + c]
 * over the fine nodes inside the n0 x n1 grid; w (B, 3, 3, nc0, nc1), out (B, nc0, nc1). */
void SUFFIX(restrict9)(long batch, long n0, long n1, long nc0, long nc1, int threads,
                       const REAL *fine, const REAL *w, REAL *out) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < batch * nc0; r++) {
        long b = r / nc0, I = r % nc0;
        REAL *o = out + r * nc1;
        for (long J = 0; J < nc1; J++) o[J] = 0;
        for (int a = 0; a < 3; a++) {
            if (2 * I + a >= n0) continue;
            const REAL *f = fine + (b * n0 + 2 * I + a) * n1;
            for (int c = 0; c < 3; c++) {
                const REAL *wr = w + ((b * 9 + a * 3 + c) * nc0 + I) * nc1;
                long m = columns_inside(n1, c, nc1);
                for (long J = 0; J < m; J++) o[J] += wr[J] * f[2 * J + c];
            }
        }
    }
}

/* fine += P coarse for operator-dependent prolongation (OperatorInterpolation.add_prolonged):
 * fine[b, 2I + a, 2J + c] += w[b, a, c, I, J] coarse[b, I, J] inside the grid, by fine rows, so
 * that no two threads write one row. */
void SUFFIX(prolong_add9)(long batch, long n0, long n1, long nc0, long nc1, int threads,
                          const REAL *coarse, const REAL *w, REAL *fine) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < batch * n0; r++) {
        long b = r / n0, i = r % n0;
        REAL *f = fine + r * n1;
        for (int a = 0; a < 3; a++) {
            long I = (i - a) / 2;
            if (i < a || (i - a) % 2 || I >= nc0) continue;
            const REAL *cr = coarse + (b * nc0 + I) * nc1;
            for (int c = 0; c < 3; c++) {
                const REAL *wr = w + ((b * 9 + a * 3 + c) * nc0 + I) * nc1;
                long m = columns_inside(n1, c, nc1);
                for (long J = 0; J < m; J++) f[2 * J + c] += wr[J] * cr[J];
            }
        }
    }
}

/* The Galerkin stencil P^T A P for operator-dependent interpolation (datagen.linalg.multigrid.
 * galerkin_stencil), by coarse rows: out[b, 1 + c0, 1 + c1, I, J] sums w[a](I, J) A_d(p)
 * w[e - 2c](I + c, J + c1) over the footprint positions a of coarse node (I, J), its fine nodes
 * p = (2I + 1 + a0, 2J + 1 + a1) inside the n0 x n1 grid, the `count` offsets d of A
 * (`offsets`: d0, d1 pairs; entries[q] (B, n0, n1) with rows contiguous and batch stride
 * batch_strides[q]) and the coarse offsets c with |a + d - 2c| <= 1 per axis. w (B, 3, 3, nc0,
 * nc1), out (B, 3, 3, nc0, nc1). */
void SUFFIX(galerkin9)(long batch, long n0, long n1, long nc0, long nc1, int threads, int count,
                       const int *offsets, const long *batch_strides, const REAL *const *entries,
                       const REAL *w, REAL *out) {
    long cp = nc0 * nc1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < batch * nc0; r++) {
        long b = r / nc0, I = r % nc0;
        REAL *o = out + b * 9 * cp + I * nc1;
        REAL left[nc1]; /* w[a](I, J) A_d(p), one footprint position and offset at a time */
        for (int k = 0; k < 9; k++)
            for (long J = 0; J < nc1; J++) o[k * cp + J] = 0;
        for (int a0 = -1; a0 <= 1; a0++) {
            long i = 2 * I + 1 + a0;
            if (i >= n0) continue;
            for (int a1 = -1; a1 <= 1; a1++) {
                const REAL *wa = w + (b * 9 + (1 + a0) * 3 + 1 + a1) * cp + I * nc1;
                long inside = columns_inside(n1, 1 + a1, nc1); /* 2J + 1 + a1 < n1 */
                for (int q = 0; q < count; q++) {
                    int d0 = offsets[2 * q], d1 = offsets[2 * q + 1];
                    const REAL *e = entries[q] + b * batch_strides[q] + i * n1 + 1 + a1;
                    for (long J = 0; J < inside; J++) left[J] = wa[J] * e[2 * J];
                    for (int c0 = -1; c0 <= 1; c0++) {
                        int b0 = a0 + d0 - 2 * c0;
                        if (b0 < -1 || b0 > 1 || I + c0 < 0 || I + c0 >= nc0) continue;
                        for (int c1 = -1; c1 <= 1; c1++) {
                            int b1 = a1 + d1 - 2 * c1;
                            if (b1 < -1 || b1 > 1) continue;
                            const REAL *wb =
                                w + (b * 9 + (1 + b0) * 3 + 1 + b1) * cp + (I + c0) * nc1 + c1;
                            REAL *oc = o + ((1 + c0) * 3 + 1 + c1) * cp;
                            long j0 = c1 < 0 ? 1 : 0, j1 = c1 > 0 ? nc1 - 1 : nc1;
                            if (j1 > inside) j1 = inside;
                            for (long J = j0; J < j1; J++) oc[J] += left[J] * wb[J];
                        }
                    }
                }
            }
        }
    }
}

/* Operator-dependent interpolation weights (multigrid.OperatorInterpolation.from_planes) by
 * coarse rows: w[b, a, c, I, J] for the fine node (2I + a, 2J + c) from the stencil's entries
 * (entries[3 (1 + d0) + 1 + d1] (B, n0, n1), rows contiguous, batch stride batch_strides[..];
 * NULL for an offset that is zero). A fine node outside the grid has the identity row (weight
 * -0 / 1). Each weight is a loop over the coarse row, so that it vectorizes. */
void SUFFIX(interpolation9)(long batch, long n0, long n1, long nc0, long nc1, int threads,
                            const REAL *const *entries, const long *batch_strides, REAL *w) {
    long cp = nc0 * nc1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < batch * nc0; r++) {
        long b = r / nc0, I = r % nc0;
        REAL *wr = w + b * 9 * cp + I * nc1;
        REAL sums[3][nc1]; /* toward, other, across; or the corner's coupling */
#define ROW(d0, d1, i, c)                                                                      \
    (entries[3 * (1 + (d0)) + 1 + (d1)]                                                        \
         ? entries[3 * (1 + (d0)) + 1 + (d1)] + b * batch_strides[3 * (1 + (d0)) + 1 + (d1)] + \
               (i) * n1 + (c)                                                                  \
         : 0)
        for (long J = 0; J < nc1; J++) wr[4 * cp + J] = 1;
        for (int k = 0; k < 4; k++) { /* the edge nodes (0, 1), (2, 1), (1, 0), (1, 2) */
            int a = k == 0 ? 0 : k == 1 ? 2 : 1, c = k == 2 ? 0 : k == 3 ? 2 : 1;
            int axis = k < 2 ? 0 : 1, side = 1 - (axis == 0 ? a : c);
            long i = 2 * I + a, m = columns_inside(n1, c, nc1);
            if (i >= n0) m = 0;
            for (int s = 0; s < 3; s++)
                for (long J = 0; J < m; J++) sums[s][J] = 0;
            for (int d = -1; d <= 1; d++) {
                const REAL *rows[3] = {axis == 0 ? ROW(side, d, i, c) : ROW(d, side, i, c),
                                       axis == 0 ? ROW(-side, d, i, c) : ROW(d, -side, i, c),
                                       axis == 0 ? ROW(0, d, i, c) : ROW(d, 0, i, c)};
                for (int s = 0; s < 3; s++)
                    if (rows[s])
                        for (long J = 0; J < m; J++) sums[s][J] += rows[s][2 * J];
            }
            REAL *out = wr + (a * 3 + c) * cp;
            for (long J = 0; J < m; J++) {
                REAL toward = sums[0][J], other = sums[1][J], across = sums[2][J];
                /* multigrid._edge_weight: toward / (toward + other), or -toward / across where
                 * the other side's couplings are zero to rounding (a Dirichlet boundary) */
                REAL tiny = 64 * EPS * ABS(across), both = toward + other;
                REAL inner = toward / (ABS(both) <= tiny ? 1 : both);
                out[J] = ABS(other) <= tiny ? -toward / across : inner;
            }
            for (long J = m; J < nc1; J++) out[J] = -(REAL)0;
        }
        for (int a = 0; a <= 2; a += 2) { /* the corners, from the edges beside them */
            for (int c = 0; c <= 2; c += 2) {
                long i = 2 * I + a, m = columns_inside(n1, c, nc1);
                if (i >= n0) m = 0;
                int da = 1 - a, dc = 1 - c;
                const REAL *corner = ROW(da, dc, i, c), *along = ROW(da, 0, i, c);
                const REAL *beside = ROW(0, dc, i, c), *centre = ROW(0, 0, i, c);
                const REAL *w_along = wr + (3 + c) * cp, *w_beside = wr + (a * 3 + 1) * cp;
                REAL *coupled = sums[0], *out = wr + (a * 3 + c) * cp;
                for (long J = 0; J < m; J++) coupled[J] = 0;
                if (corner)
                    for (long J = 0; J < m; J++) coupled[J] += corner[2 * J];
                if (along)
                    for (long J = 0; J < m; J++) coupled[J] += along[2 * J] * w_along[J];
                if (beside)
                    for (long J = 0; J < m; J++) coupled[J] += beside[2 * J] * w_beside[J];
                for (long J = 0; J < m; J++) out[J] = -coupled[J] / centre[2 * J];
                for (long J = m; J < nc1; J++) out[J] = -(REAL)0;
            }
        }
#undef ROW
    }
}

#endif
