/* Pairwise SSIM kernel of fmrirecon.evaluate (see ssim.py, ssim_native.py).
   Built at first use by ssim_native.py with the system C compiler: cc -O3 [-march=native] [-fopenmp]
   -DKT=<taps> -shared -fPIC. Package data: keep it next to ssim_native.py. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
/* KT (the number of filter taps) is fixed at compile time: -DKT=11. */
/* SSIM of every (x_i, y_j) pair from per-image statistics; out is (n, m) row-major, float64.
   X, Y: (count, C, Hc+KT-1, Wc+KT-1) input regions; UX, VX, UY, VY: (count, C, Hc, Wc) local
   means and covariance-normalised variances. Tiles of pairs x bands of rows keep the working set
   in cache; the horizontal pass of the cross term x*y lives in a per-thread band buffer, the
   vertical pass and the SSIM formula are fused into one vectorised loop per output row. */
void ssim_matrix(const float* X, const float* UX, const float* VX, int n,
                 const float* Y, const float* UY, const float* VY, int m,
                 int C, int Hc, int Wc, const float* tp,
                 float C1, float C2, float cn, int tile, int band, int nthreads, double* out)
{
    const int Hr = Hc + KT - 1, Wr = Wc + KT - 1;
    const size_t xs = (size_t)C * Hr * Wr, ms = (size_t)C * Hc * Wc;
    float taps[KT];
    for (int k = 0; k < KT; k++) taps[k] = tp[k];
    memset(out, 0, sizeof(double) * (size_t)n * m);
    const int ti = (n + tile - 1) / tile, tj = (m + tile - 1) / tile;
    /* one parallel region; threads take whole tiles (dynamic: robust to a busy core) */
    #pragma omp parallel num_threads(nthreads)
    {
        float* zh = (float*)malloc(sizeof(float) * (size_t)(band + KT - 1) * Wc);
        float* prow = (float*)malloc(sizeof(float) * (size_t)Wr);
        #pragma omp for collapse(2) schedule(dynamic, 1)
        for (int t0 = 0; t0 < ti; t0++) {
            for (int t1 = 0; t1 < tj; t1++) {
                const int i0 = t0 * tile, j0 = t1 * tile;
                const int bi = (n - i0 < tile) ? n - i0 : tile;
                const int bj = (m - j0 < tile) ? m - j0 : tile;
                for (int c = 0; c < C; c++) {
                    for (int r0 = 0; r0 < Hc; r0 += band) {
                        const int R = (Hc - r0 < band) ? Hc - r0 : band;
                        for (int ii = 0; ii < bi; ii++) {
                            for (int jj = 0; jj < bj; jj++) {
                                const float* x = X + (size_t)(i0 + ii) * xs + (size_t)c * Hr * Wr + (size_t)r0 * Wr;
                                const float* y = Y + (size_t)(j0 + jj) * xs + (size_t)c * Hr * Wr + (size_t)r0 * Wr;
                                for (int rr = 0; rr < R + KT - 1; rr++) {
                                    const float* xrow = x + (size_t)rr * Wr;
                                    const float* yrow = y + (size_t)rr * Wr;
                                    float* z = zh + (size_t)rr * Wc;
                                    #pragma omp simd
                                    for (int q = 0; q < Wr; q++) prow[q] = xrow[q] * yrow[q];
                                    #pragma omp simd
                                    for (int q = 0; q < Wc; q++) {
                                        float acc = 0.0f;
                                        #pragma GCC unroll 32
                                        for (int b = 0; b < KT; b++) acc += taps[b] * prow[q + b];
                                        z[q] = acc;
                                    }
                                }
                                const size_t off_x = (size_t)(i0 + ii) * ms + (size_t)c * Hc * Wc + (size_t)r0 * Wc;
                                const size_t off_y = (size_t)(j0 + jj) * ms + (size_t)c * Hc * Wc + (size_t)r0 * Wc;
                                double acc = 0.0;
                                int rr = 0;
                                /* four output rows at a time: they share KT + 3 rows of the band buffer */
                                for (; rr + 4 <= R; rr += 4) {
                                    const float* z0 = zh + (size_t)rr * Wc;
                                    const size_t ox = off_x + (size_t)rr * Wc, oy = off_y + (size_t)rr * Wc;
                                    float s = 0.0f;
                                    #pragma omp simd reduction(+:s)
                                    for (int q = 0; q < Wc; q++) {
                                        float f[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                                        #pragma GCC unroll 64
                                        for (int a = 0; a < KT + 3; a++) {
                                            const float zv = z0[(size_t)a * Wc + q];
                                            #pragma GCC unroll 4
                                            for (int k = 0; k < 4; k++)
                                                if (a - k >= 0 && a - k < KT) f[k] += taps[a - k] * zv;
                                        }
                                        #pragma GCC unroll 4
                                        for (int k = 0; k < 4; k++) {
                                            const size_t o = (size_t)k * Wc + q;
                                            const float ux = UX[ox + o], uy = UY[oy + o];
                                            const float p = ux * uy;
                                            const float num = (2.0f * p + C1) * (2.0f * cn * (f[k] - p) + C2);
                                            const float den = (ux * ux + uy * uy + C1) * (VX[ox + o] + VY[oy + o] + C2);
                                            s += num / den;
                                        }
                                    }
                                    acc += s;
                                }
                                for (; rr < R; rr++) {
                                    const float* z0 = zh + (size_t)rr * Wc;
                                    const float* ux = UX + off_x + (size_t)rr * Wc;
                                    const float* vx = VX + off_x + (size_t)rr * Wc;
                                    const float* uy = UY + off_y + (size_t)rr * Wc;
                                    const float* vy = VY + off_y + (size_t)rr * Wc;
                                    float s = 0.0f;
                                    #pragma omp simd reduction(+:s)
                                    for (int q = 0; q < Wc; q++) {
                                        float f = 0.0f;
                                        #pragma GCC unroll 32
                                        for (int a = 0; a < KT; a++) f += taps[a] * z0[(size_t)a * Wc + q];
                                        const float p = ux[q] * uy[q];
                                        const float num = (2.0f * p + C1) * (2.0f * cn * (f - p) + C2);
                                        const float den = (ux[q] * ux[q] + uy[q] * uy[q] + C1) * (vx[q] + vy[q] + C2);
                                        s += num / den;
                                    }
                                    acc += s;
                                }
                                out[(size_t)(i0 + ii) * m + (j0 + jj)] += acc;
                            }
                        }
                    }
                }
            }
        }
        free(zh);
        free(prow);
    }
    const double norm = 1.0 / ((double)C * Hc * Wc);
    for (size_t k = 0; k < (size_t)n * m; k++) out[k] *= norm;
}
