/* Pairwise SSIM kernel of fmrirecon.evaluate (see ssim.py, ssim_backends.py, ssim_native.py).
   Built at first use by ssim_native.py with the system C compiler: cc -O3 [-march=native] [-fopenmp]
   -DKT=<taps> -shared -fPIC. Package data: keep it next to ssim_native.py.

   Per (reconstruction i, image j) pair only the cross term f = G * (x_i y_j) (G: the separable,
   symmetric KT-tap filter) and the SSIM formula are computed; local means and variances come
   precomputed per image. Work is done in blocks of RB = 8 output rows:

   1. vertical pass: for each group of 8 columns, the KT + 7 input rows are multiplied (x * y) and
      accumulated into 8 row accumulators held in registers (each product is loaded once and used
      by every output row it touches); the 8 x 8 block is transposed in registers and stored, so
      that the buffer holds, per column, one vector of the block's 8 rows;
   2. horizontal pass + SSIM formula: per output column, the filter reads whole aligned vectors of
      the buffer (no unaligned or cache-line-splitting loads), folded by the filter's symmetry
      (t[b] == t[KT-1-b]: KT/2 adds and KT/2 + 1 multiply-adds), and the SSIM map of 8 rows is
      evaluated with the per-image statistics stored in the same (column, 8 rows) layout, in a form
      that leans on adds rather than multiplies (see htail; cov_norm is factored out of the sum).

   Pairs are processed in tiles (ti reconstructions x tj images) so that the tile's image rows are
   reused from cache; OpenMP threads take whole tiles. Sums are kept in float for at most 64
   columns of 8 rows, then added in double. ssim_pack lays out the per-image inputs.

   Layout (float32, 32-byte aligned, one block per image and channel):
   * region  (LR / 8, Hp, 8): the filter's input region, zero-padded to Hp = ceil(Hc/8)*8 + KT - 1
     rows and LR = ceil8(Wc) + ceil8(KT - 1) columns, stored as panels of 8 columns so that the
     vertical pass reads each block's rows of a panel as one contiguous run;
   * stats   (ceil(Hc/8), Wc, 2, 8): for each block of 8 rows and column, the local mean of the 8
     rows, then the (covariance-normalised) local variance + C2/2; rows past Hc: mean 0, var 1. */
#include <stddef.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#ifdef __AVX__
#include <immintrin.h>
#endif

#ifndef KT
#error "compile with -DKT=<taps>"
#endif
#define RB 8                                         /* output rows per block = floats per vector */
#define HK ((KT - 1) / 2)                            /* taps fold to HK pairs + the centre tap */
#define KP (((KT - 1 + RB - 1) / RB) * RB)           /* columns of filter overhang, rounded to 8 */
#define CHUNK 64                                     /* columns summed in float before a double add */

typedef float vf __attribute__((vector_size(32)));

static inline vf lda(const float* p) { return *(const vf*)p; }
static inline vf bc(float s) { vf v = {s, s, s, s, s, s, s, s}; return v; }

/* r[k][l] <- r[l][k] */
static inline void transpose8(vf* r)
{
#ifdef __AVX__
    const __m256 t0 = _mm256_unpacklo_ps((__m256)r[0], (__m256)r[1]), t1 = _mm256_unpackhi_ps((__m256)r[0], (__m256)r[1]);
    const __m256 t2 = _mm256_unpacklo_ps((__m256)r[2], (__m256)r[3]), t3 = _mm256_unpackhi_ps((__m256)r[2], (__m256)r[3]);
    const __m256 t4 = _mm256_unpacklo_ps((__m256)r[4], (__m256)r[5]), t5 = _mm256_unpackhi_ps((__m256)r[4], (__m256)r[5]);
    const __m256 t6 = _mm256_unpacklo_ps((__m256)r[6], (__m256)r[7]), t7 = _mm256_unpackhi_ps((__m256)r[6], (__m256)r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = (vf)_mm256_permute2f128_ps(u0, u4, 0x20); r[1] = (vf)_mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = (vf)_mm256_permute2f128_ps(u2, u6, 0x20); r[3] = (vf)_mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = (vf)_mm256_permute2f128_ps(u0, u4, 0x31); r[5] = (vf)_mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = (vf)_mm256_permute2f128_ps(u2, u6, 0x31); r[7] = (vf)_mm256_permute2f128_ps(u3, u7, 0x31);
#else
    vf t[RB];
    for (int a = 0; a < RB; a++)
        for (int b = 0; b < RB; b++) t[a][b] = r[b][a];
    for (int a = 0; a < RB; a++) r[a] = t[a];
#endif
}

/* vb[col][row] = sum_a tv[a] x[row + a][col] y[row + a][col] for 8 rows and nq groups of 8 columns;
   x, y point at the block's first row in the first panel, panels are ps floats apart */
static inline void vpass(const float* restrict x, const float* restrict y, size_t ps, int nq,
                         const vf* tv, float* restrict vb)
{
    for (int q = 0; q < nq; q++) {
        const float* xq = x + q * ps;
        const float* yq = y + q * ps;
        vf acc[RB];
        #pragma GCC unroll 8
        for (int r = 0; r < RB; r++) acc[r] = bc(0.0f);
        #pragma GCC unroll 64
        for (int k = 0; k < RB + KT - 1; k++) {
            const vf p = lda(xq + k * RB) * lda(yq + k * RB);
            #pragma GCC unroll 8
            for (int r = 0; r < RB; r++) {
                const int b = k - r;
                if (b >= 0 && b < KT) acc[r] += tv[b <= HK ? b : KT - 1 - b] * p;
            }
        }
        transpose8(acc);
        #pragma GCC unroll 8
        for (int r = 0; r < RB; r++) *(vf*)(vb + (size_t)(q * RB + r) * RB) = acc[r];
    }
}

/* horizontal pass + SSIM map of the block's 8 rows over columns [c0, c1), summed per row (lane), all
   divided by cn: with F = 2 f + C2 / cn (th: twice the taps), p2 = 2 ux uy and w = ux + uy,
   SSIM / cn = (p2 + C1) (F - p2) / ((w^2 + C1 - p2) (vx + vy + C2)) */
static inline vf htail(const float* vb, const float* sx, const float* sy, int c0, int c1, const vf* th,
                       vf c2, vf c1v)
{
    vf acc = bc(0.0f);
    for (int c = c0; c < c1; c++) {
        const float* v = vb + (size_t)c * RB;
        vf f0 = th[HK] * lda(v + HK * RB) + c2, f1 = bc(0.0f);
#if HK > 0
        f1 = th[HK - 1] * (lda(v + (HK - 1) * RB) + lda(v + (HK + 1) * RB));
#endif
        #pragma GCC unroll 16
        for (int b = 0; b < HK - 1; b++) {
            const vf s = lda(v + b * RB) + lda(v + (KT - 1 - b) * RB);
            if (b & 1) f1 += th[b] * s; else f0 += th[b] * s;
        }
        const vf ux = lda(sx + 2 * RB * c), uy = lda(sy + 2 * RB * c);
        const vf w = ux + uy, p = ux * uy, p2 = p + p;
        const vf num = (p2 + c1v) * ((f0 + f1) - p2);
        const vf den = (w * w + (c1v - p2)) * (lda(sx + 2 * RB * c + RB) + lda(sy + 2 * RB * c + RB));
        acc += num / den;
    }
    return acc;
}

static inline double pair_block(const float* x, const float* y, const float* sx, const float* sy, size_t ps,
                                int nq, int Wc, const vf* tv, const vf* th, vf c2, vf c1v, vf mk, float* vb)
{
    vpass(x, y, ps, nq, tv, vb);
    double sum = 0.0;
    for (int c0 = 0; c0 < Wc; c0 += CHUNK) {
        const vf a = mk * htail(vb, sx, sy, c0, Wc - c0 < CHUNK ? Wc : c0 + CHUNK, th, c2, c1v);
        sum += ((double)a[0] + a[1]) + ((double)a[2] + a[3]) + (((double)a[4] + a[5]) + ((double)a[6] + a[7]));
    }
    return sum;
}

/* one row of x (and of x^2) filtered horizontally into h1, h2 (Wc); taps in order, as torch does */
static void hpass_row(const float* restrict xr, int Wc, const float* restrict t, float* restrict h1, float* restrict h2)
{
    #pragma omp simd
    for (int c = 0; c < Wc; c++) {
        float a = xr[c] * t[0], b = (xr[c] * xr[c]) * t[0];
        #pragma GCC unroll 32
        for (int k = 1; k < KT; k++) { a += t[k] * xr[c + k]; b += t[k] * (xr[c + k] * xr[c + k]); }
        h1[c] = a;
        h2[c] = b;
    }
}

/* copy a region (hr, wr) into panels of 8 columns (LR / 8, Hp, 8), zero-padded */
static void to_panels(const float* x, int hr, int wr, int Hp, int LR, float* R)
{
    for (int p = 0; p < LR / RB; p++) {
        float* d = R + (size_t)p * Hp * RB;
        const int n = wr - p * RB < 0 ? 0 : (wr - p * RB < RB ? wr - p * RB : RB);
        for (int r = 0; r < Hp; r++, d += RB) {
            int l = 0;
            if (r < hr)
                for (; l < n; l++) d[l] = x[(size_t)r * wr + p * RB + l];
            for (; l < RB; l++) d[l] = 0.0f;
        }
    }
}

/* The per-image inputs of ssim_matrix from `count` input regions src (Hc + KT - 1, Wc + KT - 1):
   R (count, LR / 8, Hp, 8), the regions as zero-padded panels, and S (count, ceil(Hc/8), Wc, 2, 8),
   the local mean mu = G * x and cn * (G * x^2 - mu^2) + C2/2 of every output pixel (rows past Hc:
   mean 0, var 1), in float32 in the order of ssim_core.filt so that this backend and the torch ones
   see the same statistics. Horizontally filtered rows live in a ring of KT rows. */
int ssim_pack(const float* src, int count, int Hc, int Wc, int Hp, int LR, const float* tp, float cn,
              float C2, int nthreads, float* R, float* S)
{
    const int nrb = (Hc + RB - 1) / RB, hr = Hc + KT - 1, wr = Wc + KT - 1;
    if (count < 0 || Hc < 1 || Wc < 1 || Hp != nrb * RB + KT - 1 || LR != ((Wc + RB - 1) / RB) * RB + KP) return -1;
    int failed = 0;
    #pragma omp parallel num_threads(nthreads) reduction(|: failed)
    {
        float* h1 = (float*)malloc(sizeof(float) * (2 * KT + 2) * (size_t)Wc);
        float *h2 = h1 + (size_t)KT * Wc, *mu = h2 + (size_t)KT * Wc, *e2 = mu + Wc;
        failed = !h1;
        #pragma omp for schedule(dynamic, 1)
        for (int k = 0; k < count; k++) {
            if (failed) continue;
            const float* x = src + (size_t)k * hr * wr;
            float* o = S + (size_t)k * nrb * Wc * 2 * RB;
            to_panels(x, hr, wr, Hp, LR, R + (size_t)k * Hp * LR);
            for (int r = 0; r < KT - 1; r++) hpass_row(x + (size_t)r * wr, Wc, tp, h1 + (size_t)r * Wc, h2 + (size_t)r * Wc);
            for (int r = 0; r < nrb * RB; r++) {
                float* orow = o + (size_t)(r / RB) * Wc * 2 * RB + r % RB;
                if (r >= Hc) {
                    for (int c = 0; c < Wc; c++) { orow[2 * RB * c] = 0.0f; orow[2 * RB * c + RB] = 1.0f; }
                    continue;
                }
                const int slot = (r + KT - 1) % KT;   /* ring: row r + a lives in slot (r + a) % KT */
                hpass_row(x + (size_t)(r + KT - 1) * wr, Wc, tp, h1 + (size_t)slot * Wc, h2 + (size_t)slot * Wc);
                const float *p1[KT], *p2[KT];
                for (int a = 0; a < KT; a++) {
                    p1[a] = h1 + (size_t)((r + a) % KT) * Wc;
                    p2[a] = h2 + (size_t)((r + a) % KT) * Wc;
                }
                #pragma omp simd
                for (int c = 0; c < Wc; c++) {
                    float m1 = p1[0][c] * tp[0], m2 = p2[0][c] * tp[0];
                    #pragma GCC unroll 32
                    for (int a = 1; a < KT; a++) { m1 += tp[a] * p1[a][c]; m2 += tp[a] * p2[a][c]; }
                    mu[c] = m1;
                    e2[c] = cn * (m2 - m1 * m1) + 0.5f * C2;
                }
                for (int c = 0; c < Wc; c++) {
                    orow[2 * RB * c] = mu[c];
                    orow[2 * RB * c + RB] = e2[c];
                }
            }
        }
        free(h1);
    }
    return failed ? -2 : 0;
}

/* out[i * m + j] = SSIM(x_i, y_j); returns 0, or -1 when the arguments are inconsistent */
int ssim_matrix(const float* X, const float* SX, int n, const float* Y, const float* SY, int m,
                int C, int Hc, int Wc, int Hp, int LR, const float* tp,
                float C1, float C2, float cn, int ti, int tj, int nthreads, double* out)
{
    const int nrb = (Hc + RB - 1) / RB, nq = (Wc + KT - 1 + RB - 1) / RB;
    if (n < 0 || m < 0 || C < 1 || Hc < 1 || Wc < 1 || ti < 1 || tj < 1 || Hp != nrb * RB + KT - 1 ||
        LR != ((Wc + RB - 1) / RB) * RB + KP || (size_t)((uintptr_t)X | (uintptr_t)Y | (uintptr_t)SX | (uintptr_t)SY) % 32)
        return -1;
    vf tv[HK + 1], th[HK + 1];
    for (int b = 0; b <= HK; b++) { tv[b] = bc(tp[b]); th[b] = bc(2.0f * tp[b]); }
    const vf c2 = bc(C2 / cn), c1v = bc(C1), one = bc(1.0f);
    vf mk = one;
    for (int l = 0; l < RB; l++) mk[l] = (nrb - 1) * RB + l < Hc ? 1.0f : 0.0f;
    const size_t ps = (size_t)Hp * RB, xs = (size_t)Hp * LR, ss = (size_t)nrb * Wc * 2 * RB;   /* per channel */
    const int nti = (n + ti - 1) / ti, ntj = (m + tj - 1) / tj;
    const double norm = (double)cn / ((double)C * Hc * Wc);   /* htail sums SSIM / cn */
    int failed = 0;
    #pragma omp parallel num_threads(nthreads) reduction(|: failed)
    {
        float* vb = (float*)aligned_alloc(32, sizeof(float) * (size_t)LR * RB);
        double* acc = (double*)malloc(sizeof(double) * (size_t)ti * tj);
        failed = !vb || !acc;
        #pragma omp for collapse(2) schedule(dynamic, 1)
        for (int t0 = 0; t0 < nti; t0++) {
            for (int t1 = 0; t1 < ntj; t1++) {
                if (failed) continue;
                const int i0 = t0 * ti, j0 = t1 * tj;
                const int bi = n - i0 < ti ? n - i0 : ti, bj = m - j0 < tj ? m - j0 : tj;
                memset(acc, 0, sizeof(double) * (size_t)ti * tj);
                for (int c = 0; c < C; c++)
                for (int rb = 0; rb < nrb; rb++) {
                    const vf mask = rb == nrb - 1 ? mk : one;
                    const size_t xo = (size_t)rb * RB * RB, so = (size_t)rb * Wc * 2 * RB;
                    for (int ii = 0; ii < bi; ii++) {
                        const size_t i = (size_t)(i0 + ii) * C + c;
                        for (int jj = 0; jj < bj; jj++) {
                            const size_t j = (size_t)(j0 + jj) * C + c;
                            acc[ii * tj + jj] += pair_block(X + i * xs + xo, Y + j * xs + xo, SX + i * ss + so,
                                                            SY + j * ss + so, ps, nq, Wc, tv, th, c2, c1v, mask, vb);
                        }
                    }
                }
                for (int ii = 0; ii < bi; ii++)
                    for (int jj = 0; jj < bj; jj++)
                        out[(size_t)(i0 + ii) * m + j0 + jj] = acc[ii * tj + jj] * norm;
            }
        }
        free(vb);
        free(acc);
    }
    return failed ? -2 : 0;
}
