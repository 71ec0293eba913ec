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

#define REAL float
#define SUFFIX(name) name##_f32
#include __FILE__
#undef REAL
#undef SUFFIX

#define REAL double
#define SUFFIX(name) name##_f64
#include __FILE__
#undef REAL
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
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < rows; r++) {
        long b = r / n0, i = r % n0;
        const REAL *xr = x + r * n1, *dr = d + r * n1, *wyr = wy + r * (n1 - 1);
        REAL *o = out + r * n1;
        for (long j = 0; j < n1; j++) o[j] = dr[j] * xr[j];
        for (long j = 1; j < n1; j++) o[j] -= wyr[j - 1] * xr[j - 1];
        for (long j = 0; j < n1 - 1; j++) o[j] -= wyr[j] * xr[j + 1];
        if (i > 0) {
            const REAL *c = wx + (b * (n0 - 1) + i - 1) * n1, *u = xr - n1;
            for (long j = 0; j < n1; j++) o[j] -= c[j] * u[j];
        }
        if (i < n0 - 1) {
            const REAL *c = wx + (b * (n0 - 1) + i) * n1, *u = xr + n1;
            for (long j = 0; j < n1; j++) o[j] -= c[j] * u[j];
        }
        SUFFIX(finish)(n1, mode, xr, f + r * n1, w + r * n1, o);
    }
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
                long m = (n1 - c + 1) / 2 < nc1 ? (n1 - c + 1) / 2 : nc1;
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
                long m = (n1 - c + 1) / 2 < nc1 ? (n1 - c + 1) / 2 : nc1;
                for (long J = 0; J < m; J++) f[2 * J + c] += wr[J] * cr[J];
            }
        }
    }
}

#endif
