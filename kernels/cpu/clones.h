// Internal to kernels/cpu: GPUDL_CPU_CLONES, for hot element-wise loops built for several CPUs.
#pragma once

// The library is built for the x86-64 baseline (SSE2), so it runs anywhere; a loop marked
// GPUDL_CPU_CLONES is also compiled for x86-64-v3 (AVX2, FMA) and v4 (AVX-512), and the
// loader picks the best the CPU has. FMA contraction in those versions changes the last bits
// of some results from one CPU to another (never from run to run on one machine). Clones are
// never inlined, which also keeps the restrict qualifiers that inlining into a thread pool's
// lambda loses; without clones the mark is noinline for the same reason. CMake defines
// GPUDL_HAVE_TARGET_CLONES where the compiler and C library can (GCC 12+, glibc); Clang
// before 18 accepts the attribute but may always load the baseline version.
#if defined(GPUDL_HAVE_TARGET_CLONES) && defined(__x86_64__)
#define GPUDL_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define GPUDL_CPU_CLONES [[gnu::noinline]]
#endif
