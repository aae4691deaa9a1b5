//! Process-wide setup: the kernel path and the thread pool.

use rnnlm_kernels::{Isa, Kernels};

/// Name of the environment variable that forces a kernel path.
pub const ISA_ENV: &str = "RNNLM_ISA";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{ISA_ENV}={value:?} is not a kernel path: use scalar, avx2, avx512 or neon")]
    UnknownIsa { value: String },
    #[error("{ISA_ENV}={value}: {source}")]
    UnavailableIsa {
        value: String,
        source: rnnlm_kernels::IsaUnavailable,
    },
    #[error("cannot start {threads} worker threads: {message}")]
    ThreadPool { threads: usize, message: String },
}

/// Returns the kernels forced by `RNNLM_ISA`, or the fastest this CPU has,
/// and makes the choice the process-wide default.
pub fn kernels_from_env() -> Result<Kernels, RuntimeError> {
    let Ok(value) = std::env::var(ISA_ENV) else {
        return Ok(Kernels::process());
    };
    if value.is_empty() {
        return Ok(Kernels::process());
    }
    let isa: Isa = value.parse().map_err(|_| RuntimeError::UnknownIsa {
        value: value.clone(),
    })?;
    Kernels::set_process_isa(isa)
        .map_err(|source| RuntimeError::UnavailableIsa { value, source })?;
    Ok(Kernels::process())
}

/// Sizes rayon's global pool to `threads` (0 means one per logical CPU) and
/// returns the number of threads it has.
pub fn init_threads(threads: usize) -> Result<usize, RuntimeError> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if threads == 0 { cpus } else { threads };
    if threads > cpus {
        tracing::warn!(
            "--threads {threads} is more than the {cpus} logical CPUs here: threads then wait \
             on each other and run slower; 0 picks one per CPU"
        );
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| RuntimeError::ThreadPool {
            threads,
            message: e.to_string(),
        })?;
    Ok(threads)
}
