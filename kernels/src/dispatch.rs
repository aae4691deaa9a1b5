//! Choice of the instruction-set path, made once per process.

use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set path that every kernel implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable scalar code: the reference every SIMD path is tested against.
    Scalar,
    /// x86_64 with AVX2 and FMA (8 lanes of f32).
    Avx2,
    /// x86_64 with AVX-512F (16 lanes of f32).
    Avx512,
    /// aarch64 Advanced SIMD (4 lanes of f32).
    Neon,
}

impl Isa {
    /// Every path, in order of preference from slowest to fastest.
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Neon, Isa::Avx2, Isa::Avx512];

    /// Returns the lower-case name used by `RNNLM_ISA` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    /// Number of f32 lanes in one vector register of this path.
    pub fn lanes(self) -> usize {
        match self {
            Isa::Scalar => 1,
            Isa::Avx2 => 8,
            Isa::Avx512 => 16,
            Isa::Neon => 4,
        }
    }

    /// Checks whether this CPU can run the path. The result comes from
    /// CPUID (x86_64) and is cached by `cpufeatures` after the first call.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => cpu_avx2_fma::get(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => cpu_avx512f::get(),
            // Advanced SIMD is part of the aarch64 baseline: every aarch64
            // CPU that Rust targets has it.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Returns the fastest path this CPU supports.
    pub fn detect() -> Isa {
        let mut best = Isa::Scalar;
        for isa in Isa::ALL {
            if isa.is_available() {
                best = isa;
            }
        }
        best
    }

    fn to_code(self) -> u8 {
        match self {
            Isa::Scalar => 1,
            Isa::Avx2 => 2,
            Isa::Avx512 => 3,
            Isa::Neon => 4,
        }
    }

    fn from_code(code: u8) -> Option<Isa> {
        match code {
            1 => Some(Isa::Scalar),
            2 => Some(Isa::Avx2),
            3 => Some(Isa::Avx512),
            4 => Some(Isa::Neon),
            _ => None,
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for Isa {
    type Err = ParseIsaError;

    fn from_str(s: &str) -> Result<Isa, ParseIsaError> {
        match s {
            "scalar" => Ok(Isa::Scalar),
            "avx2" => Ok(Isa::Avx2),
            "avx512" => Ok(Isa::Avx512),
            "neon" => Ok(Isa::Neon),
            _ => Err(ParseIsaError),
        }
    }
}

/// Error for an instruction-set name other than scalar, avx2, avx512, neon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseIsaError;

impl fmt::Display for ParseIsaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown instruction set: expected one of scalar, avx2, avx512, neon")
    }
}

impl core::error::Error for ParseIsaError {}

/// Error for a request to run a path this CPU lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsaUnavailable {
    /// The path that was requested.
    pub requested: Isa,
    /// The fastest path this CPU does support.
    pub detected: Isa,
}

impl fmt::Display for IsaUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "instruction set {} is not available on this CPU (the fastest available is {}); \
             choose that or scalar",
            self.requested, self.detected
        )
    }
}

impl core::error::Error for IsaUnavailable {}

#[cfg(target_arch = "x86_64")]
cpufeatures::new!(cpu_avx2_fma, "avx2", "fma");
#[cfg(target_arch = "x86_64")]
cpufeatures::new!(cpu_avx512f, "avx512f");

/// The process-wide path: 0 until first use, then an `Isa` code.
static PROCESS_ISA: AtomicU8 = AtomicU8::new(0);

/// A handle to the kernels of one instruction-set path.
///
/// The field is private and every constructor checks the CPU, so holding a
/// `Kernels` proves that its path can run here; the SIMD modules rely on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kernels {
    isa: Isa,
}

impl Kernels {
    /// Returns the kernels of `isa`, or an error when this CPU lacks it.
    pub fn new(isa: Isa) -> Result<Kernels, IsaUnavailable> {
        if isa.is_available() {
            Ok(Kernels { isa })
        } else {
            Err(IsaUnavailable {
                requested: isa,
                detected: Isa::detect(),
            })
        }
    }

    /// Returns the scalar reference kernels, which run everywhere.
    pub fn scalar() -> Kernels {
        Kernels { isa: Isa::Scalar }
    }

    /// Returns the process-wide kernels: the path set by
    /// [`Kernels::set_process_isa`], else the fastest one this CPU has,
    /// detected on the first call and cached.
    pub fn process() -> Kernels {
        let code = PROCESS_ISA.load(Ordering::Relaxed);
        if let Some(isa) = Isa::from_code(code) {
            return Kernels { isa };
        }
        let isa = Isa::detect();
        // A concurrent `set_process_isa` wins over detection.
        let _ =
            PROCESS_ISA.compare_exchange(0, isa.to_code(), Ordering::Relaxed, Ordering::Relaxed);
        Kernels {
            isa: Isa::from_code(PROCESS_ISA.load(Ordering::Relaxed)).unwrap_or(isa),
        }
    }

    /// Forces the path that [`Kernels::process`] returns from now on.
    pub fn set_process_isa(isa: Isa) -> Result<(), IsaUnavailable> {
        let kernels = Kernels::new(isa)?;
        PROCESS_ISA.store(kernels.isa.to_code(), Ordering::Relaxed);
        Ok(())
    }

    /// The instruction-set path these kernels run.
    pub fn isa(&self) -> Isa {
        self.isa
    }
}
