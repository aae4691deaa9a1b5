//! rnnlm: training and inference of LSTM language models on CPUs.

pub mod api;
pub mod batch;
pub mod checkpoint;
pub mod corpus;
pub mod error;
pub mod eval;
pub mod fetch;
pub mod matmul;
pub mod model;
pub mod profile;
pub mod recurrence;
pub mod runtime;
pub mod step;
pub mod train;
pub mod workspace;
