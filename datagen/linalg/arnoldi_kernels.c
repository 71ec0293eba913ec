/* Fused CPU kernel of one GMRES / GCRO-DR Arnoldi step (datagen.linalg.gcrodr; loaded by fused.py).
 *
 * The eager step is some forty tensor operations, most of them on a few dozen numbers (the
 * Hessenberg column, the Givens rotation, the stopping test), each costing microseconds of
 * dispatch: on systems of a few thousand unknowns they, not the memory traffic, set the time of a
 * step. This kernel does the whole step after the operator in one call: classical Gram-Schmidt of
 * the new vector against [C; V] (a second pass for every member when one member needs it, as the
 * eager path decides), the new basis row, the Hessenberg and B columns, the product of the Givens
 * rotations, and the stopping test. Members are split over `threads` OpenMP threads. The file is
 * compiled once for float and once for double (it includes itself with REAL and SUFFIX defined).
 */
#ifndef REAL
#include <math.h>

#define REAL float
#define SQRT sqrtf
#define HYPOT hypotf
#define SUFFIX(name) name##_f32
#include __FILE__
#undef REAL
#undef SQRT
#undef HYPOT
#undef SUFFIX

#define REAL double
#define SQRT sqrt
#define HYPOT hypot
#define SUFFIX(name) name##_f64
#include __FILE__
#undef REAL
#undef SQRT
#undef HYPOT
#undef SUFFIX

#else

static REAL SUFFIX(norm)(long n, const REAL *restrict v) {
    REAL s = 0;
#pragma omp simd reduction(+ : s)
    for (long t = 0; t < n; t++) s += v[t] * v[t];
    return SQRT(s);
}

/* One classical Gram-Schmidt pass: h = rows v, then v -= rows^T h; rows (r, n) row by row.
 * Four rows at a time, so that v is read once per four rows. */
static void SUFFIX(project)(long r, long n, const REAL *restrict rows, REAL *restrict v,
                            REAL *restrict h) {
    long i = 0;
    for (; i + 4 <= r; i += 4) {
        const REAL *a = rows + i * n, *b = a + n, *c = b + n, *d = c + n;
        REAL s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
        for (long t = 0; t < n; t++) {
            s0 += a[t] * v[t];
            s1 += b[t] * v[t];
            s2 += c[t] * v[t];
            s3 += d[t] * v[t];
        }
        h[i] = s0, h[i + 1] = s1, h[i + 2] = s2, h[i + 3] = s3;
    }
    for (; i < r; i++) {
        const REAL *a = rows + i * n;
        REAL s = 0;
#pragma omp simd reduction(+ : s)
        for (long t = 0; t < n; t++) s += a[t] * v[t];
        h[i] = s;
    }
    i = 0;
    for (; i + 4 <= r; i += 4) {
        const REAL *a = rows + i * n, *b = a + n, *c = b + n, *d = c + n;
        REAL h0 = h[i], h1 = h[i + 1], h2 = h[i + 2], h3 = h[i + 3];
#pragma omp simd
        for (long t = 0; t < n; t++) v[t] -= h0 * a[t] + h1 * b[t] + h2 * c[t] + h3 * d[t];
    }
    for (; i < r; i++) {
        const REAL *a = rows + i * n;
        REAL h0 = h[i];
#pragma omp simd
        for (long t = 0; t < n; t++) v[t] -= h0 * a[t];
    }
}

/* Step j (0-based) of a cycle for `batch` members; `w` (B, n) holds A M^{-1} v_j and is
 * overwritten by its orthogonalized part. Arrays as datagen.linalg.gcrodr._Cycle: basis
 * (B, k + m + 1, n) = [C; V], hbar (B, m + 1, m), q (B, m + 1, m + 1), bmat (B, k, m) (unused
 * when k = 0), beta (B,); target, floor (B,) doubles, budget (B,) steps left. Writes the new
 * basis row k + j + 1, hbar[:, :j + 2, j], bmat[:, :, j], rows j and j + 1 of q, and scratch
 * h (B, k + m + 1). finish[b] = 1 where the cycle's residual estimate beta |q[j + 1, 0]| is at
 * most target, the new norm at most floor (breakdown) or the budget is spent; returns how many. */
int SUFFIX(arnoldi_step)(long batch, long n, long k, long m, long j, int twice, int threads,
                         REAL *basis, REAL *w, REAL *hbar, REAL *q, REAL *bmat,
                         const REAL *beta, const double *target, const double *floor_,
                         const long *budget, REAL *h_all, REAL *hnorm, unsigned char *finish) {
    long r = k + j + 1, width = k + m + 1;
    int again = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(|| : again) if (batch > 1)
    for (long b = 0; b < batch; b++) {
        REAL *v = w + b * n;
        REAL before = twice ? SUFFIX(norm)(n, v) : 0;
        SUFFIX(project)(r, n, basis + b * width * n, v, h_all + b * width);
        hnorm[b] = SUFFIX(norm)(n, v);
        again = again || (twice && hnorm[b] < (REAL)0.7071067811865476 * before);
    }
    int count = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : count) if (batch > 1)
    for (long b = 0; b < batch; b++) {
        REAL *v = w + b * n, *h = h_all + b * width;
        REAL *hb = hbar + b * (m + 1) * m, *qb = q + b * (m + 1) * (m + 1);
        if (again) {
            REAL extra[width];
            SUFFIX(project)(r, n, basis + b * width * n, v, extra);
            for (long i = 0; i < r; i++) h[i] += extra[i];
            hnorm[b] = SUFFIX(norm)(n, v);
        }
        REAL hn = hnorm[b], divisor = hn > 0 ? hn : 1;
        REAL *next = basis + (b * width + r) * n;
        for (long t = 0; t < n; t++) next[t] = v[t] / divisor;
        for (long i = 0; i < k; i++) bmat[(b * k + i) * m + j] = h[i];
        for (long i = 0; i <= j; i++) hb[i * m + j] = h[k + i];
        hb[(j + 1) * m + j] = hn;
        /* Rows j, j + 1 of the rotations so far applied to the new column, the rotation that
         * zeroes its last entry, and that rotation folded into q. */
        REAL *qj = qb + j * (m + 1), *qn = qj + (m + 1);
        REAL a = 0, c = 0;
        for (long i = 0; i <= j + 1; i++) {
            a += qj[i] * hb[i * m + j];
            c += qn[i] * hb[i * m + j];
        }
        REAL radius = HYPOT(a, c);
        REAL cs = radius > 0 ? a / radius : 1, sn = radius > 0 ? c / radius : c;
        for (long i = 0; i <= j + 1; i++) {
            REAL top = qj[i], bottom = qn[i];
            qj[i] = cs * top + sn * bottom;
            qn[i] = -sn * top + cs * bottom;
        }
        REAL lead = qn[0] < 0 ? -qn[0] : qn[0];
        double estimate = (double)(lead * beta[b]);
        finish[b] = estimate <= target[b] || (double)hn <= floor_[b] || j + 1 >= budget[b];
        count += finish[b];
    }
    return count;
}

void SUFFIX(darcy5)(long rows, long n0, long n1, int mode, int threads, const REAL *x,
                    const REAL *f, const REAL *w, const REAL *d, const REAL *wx, const REAL *wy,
                    REAL *out); /* stencil_kernels.c, in the same library */

/* Steps j0, j0 + 1, ... of a cycle on the Darcy 5-point operator with a Jacobi preconditioner
 * (inv (B, n0, n1) its inverse diagonal, z (B, m, n) the preconditioned basis) or none (both
 * NULL): z_j = inv v_j, w = A z_j (d, wx, wy as darcy5's, per member), then arnoldi_step, until
 * some member's cycle ends or step m - 1 is done, with no return to Python in between. *last
 * is the last step taken; returns arnoldi_step's count there, finish its flags. w (B, n) is
 * scratch. The same arithmetic as the step-by-step path (the same kernels in the same order). */
int SUFFIX(arnoldi_darcy_steps)(long batch, long n0, long n1, long k, long m, long j0, int twice,
                                int threads, REAL *basis, REAL *z, const REAL *inv,
                                const REAL *d, const REAL *wx, const REAL *wy, REAL *w,
                                REAL *hbar, REAL *q, REAL *bmat, const REAL *beta,
                                const double *target, const double *floor_, const long *budget,
                                REAL *h_all, REAL *hnorm, unsigned char *finish, long *last) {
    long n = n0 * n1, width = k + m + 1;
    int count = 0;
    for (long j = j0; j < m; j++) {
#pragma omp parallel for num_threads(threads) schedule(static) if (batch > 1)
        for (long b = 0; b < batch; b++) {
            const REAL *v = basis + (b * width + k + j) * n;
            const REAL *x = v;
            if (inv) {
                REAL *zj = z + (b * m + j) * n;
                const REAL *ib = inv + b * n;
#pragma omp simd
                for (long t = 0; t < n; t++) zj[t] = ib[t] * v[t];
                x = zj;
            }
            SUFFIX(darcy5)(n0, n0, n1, 0, 1, x, x, x, d + b * n, wx + b * (n0 - 1) * n1,
                           wy + b * n0 * (n1 - 1), w + b * n);
        }
        count = SUFFIX(arnoldi_step)(batch, n, k, m, j, twice, threads, basis, w, hbar, q, bmat,
                                     beta, target, floor_, budget, h_all, hnorm, finish);
        *last = j;
        if (count > 0) break;
    }
    return count;
}

#endif
