//! No-allocation compute kernels for LSTM language models.
//!
//! Every kernel takes slices and sizes; the caller owns all memory and the
//! crate never allocates (it is `#![no_std]` without `alloc`). Each kernel
//! has a scalar reference implementation and SIMD paths (AVX-512F and
//! AVX2+FMA on x86_64, NEON on aarch64). A [`Kernels`] value names the path
//! and is the only way to call a kernel, so a SIMD path runs only after the
//! CPU was checked for it.
//!
//! Layouts are row-major `f32`. LSTM gate blocks are `(B, 4H)` with the gates
//! in PyTorch's order i, f, g, o: row `b` holds `i` in columns `0..H`, `f` in
//! `H..2H`, `g` in `2H..3H` and `o` in `3H..4H`.
//!
//! Kernels check their slice lengths and panic with a message when they do
//! not match the sizes passed; each kernel's `# Panics` section lists the
//! conditions.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

mod activation;
mod dispatch;
mod dropout;
mod embedding;
mod lstm;
mod packed_gemm;
mod softmax;
mod vector;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use activation::{scalar_exp, scalar_ln_f64, scalar_sigmoid, scalar_tanh};
pub use dispatch::{Isa, IsaUnavailable, Kernels, ParseIsaError};
pub use dropout::{DropoutRng, dropout_rng};
pub use packed_gemm::{PANEL, packed_len};
