//! Dataset fetching: see the module docs once written.
