//! Corpus reading: see the module docs once written.
