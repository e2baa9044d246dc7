// Per-instruction-set clones of hot CPU loops.
//
// A function marked DETS_CHANNEL_LOOPS is compiled for AVX-512, AVX2+FMA and
// baseline x86-64 and the variant is picked when the library loads (GCC
// function multi-versioning), so one build runs everywhere and uses wide
// vectors where they exist. Elsewhere it is an ordinary function.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DETS_CHANNEL_LOOPS \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DETS_CHANNEL_LOOPS
#endif
// The loops a clone calls must be inlined into it to get its instructions.
#if defined(__GNUC__)
#define DETS_INLINE inline __attribute__((always_inline))
#else
#define DETS_INLINE inline
#endif
