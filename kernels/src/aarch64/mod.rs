//! aarch64 SIMD path (Advanced SIMD, always present on aarch64).

pub(crate) mod neon;
