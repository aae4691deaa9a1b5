//! Benchmark suite: the comparison harness's building blocks (runs of each
//! implementation, statistics, the product roofline, tables, the chart and
//! the regression check), used by `src/bin/compare.rs`.

pub mod baseline;
pub mod chart;
pub mod gemm_rate;
pub mod results;
pub mod roofline;
pub mod runner;
pub mod stats;
pub mod table;
