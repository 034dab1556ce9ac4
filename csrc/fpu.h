/* fpu.h - flush denormals to zero for the duration of a native call.
 *
 * Why: RMSprop's mean squares of units whose gradient has died decay towards
 * zero through the float32 subnormal range, where each operation costs ~100
 * cycles; a wide model's epochs got 2-6x slower one after the other. TensorFlow
 * and PyTorch's CPU kernels run with flush-to-zero for the same reason. The
 * caller's mode is restored on the way out. x86 (SSE's MXCSR) and AArch64 (FPCR);
 * elsewhere a no-op. */
#ifndef FASTNN_FPU_H
#define FASTNN_FPU_H

#if defined(__SSE2__) || defined(_M_X64)
#include <xmmintrin.h>
typedef unsigned int fnn_fpu_state;
static inline fnn_fpu_state fnn_fpu_flush_denormals(void)
{
    const unsigned int old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
    return old;
}
static inline void fnn_fpu_restore(fnn_fpu_state old) { _mm_setcsr(old); }
#elif defined(__aarch64__) && defined(__GNUC__)
/* FPCR's FZ bit (24) flushes subnormal inputs and results to zero on AArch64. */
typedef unsigned long fnn_fpu_state;
static inline fnn_fpu_state fnn_fpu_flush_denormals(void)
{
    unsigned long old;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(old));
    __asm__ __volatile__("msr fpcr, %0" : : "r"(old | (1UL << 24)));
    return old;
}
static inline void fnn_fpu_restore(fnn_fpu_state old)
{
    __asm__ __volatile__("msr fpcr, %0" : : "r"(old));
}
#else
typedef int fnn_fpu_state;
static inline fnn_fpu_state fnn_fpu_flush_denormals(void) { return 0; }
static inline void fnn_fpu_restore(fnn_fpu_state old) { (void)old; }
#endif

#endif
