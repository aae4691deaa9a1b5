//! Every kernel on every instruction-set path this CPU can run, against the
//! scalar path and against f64 references, at odd sizes, with extreme
//! values and NaN. On aarch64 (natively or under qemu) the same tests cover
//! NEON.

mod activation;
mod common;
mod dispatch;
mod elementwise;
mod lstm;
mod packed_gemm;
mod softmax;
