// DETS_HD marks the small math functions that an op's CPU and CUDA kernels
// share: host and device, inlined, under nvcc; plain inline elsewhere.
#pragma once

#if defined(__CUDACC__)
#define DETS_HD __host__ __device__ __forceinline__
#else
#define DETS_HD inline
#endif
