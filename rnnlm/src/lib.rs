//! rnnlm library.
