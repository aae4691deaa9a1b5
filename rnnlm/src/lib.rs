//! rnnlm: training and inference of LSTM language models on CPUs.

pub mod corpus;
pub mod fetch;
