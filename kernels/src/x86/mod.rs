//! x86_64 SIMD paths. Every function here is reached only through a
//! `Kernels` whose constructor verified the CPU features of its path.

pub(crate) mod avx2;
pub(crate) mod avx512;
