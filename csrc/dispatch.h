/* dispatch.h - what the run-time kernel choice needs: whether this compiler can build
 * x86 SIMD variants without -m flags, and the attributes that mark them. */
#ifndef FASTNN_DISPATCH_H
#define FASTNN_DISPATCH_H

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) /* GCC and clang */
#define FNN_HAVE_X86_DISPATCH 1
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))
#define AVX512 __attribute__((target("avx512f")))
#else
#define FNN_HAVE_X86_DISPATCH 0
#endif

/* Kernel levels, as fnn_narrow_select and fnn_optimizer_select take them. */
enum { FNN_LEVEL_BASELINE = 0, FNN_LEVEL_AVX2 = 1, FNN_LEVEL_AVX512 = 2 };

#endif
