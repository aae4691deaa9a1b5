//! rnnlm: training and inference of LSTM language models on CPUs.

pub mod corpus;
pub mod error;
pub mod fetch;
pub mod matmul;
pub mod model;
pub mod step;
pub mod workspace;
