//! Choosing a path: parsing names, refusing paths this CPU lacks, and the
//! process-wide choice.

use rnnlm_kernels::{Isa, IsaUnavailable, Kernels, ParseIsaError};

#[test]
fn isa_parses_every_name_it_prints() {
    for isa in Isa::ALL {
        assert_eq!(isa.name().parse::<Isa>(), Ok(isa));
        assert_eq!(isa.to_string(), isa.name());
    }
    assert_eq!("scalar".parse::<Isa>(), Ok(Isa::Scalar));
    assert_eq!("avx2".parse::<Isa>(), Ok(Isa::Avx2));
    assert_eq!("avx512".parse::<Isa>(), Ok(Isa::Avx512));
    assert_eq!("neon".parse::<Isa>(), Ok(Isa::Neon));
}

#[test]
fn isa_rejects_unknown_and_miscased_names() {
    for name in ["", "AVX2", "Scalar", "sse4", "avx-512", " neon", "avx512f"] {
        assert_eq!(name.parse::<Isa>(), Err(ParseIsaError), "name {name:?}");
    }
    assert_eq!(
        ParseIsaError.to_string(),
        "unknown instruction set: expected one of scalar, avx2, avx512, neon"
    );
}

#[test]
fn isa_lanes_match_register_width() {
    assert_eq!(Isa::Scalar.lanes(), 1);
    assert_eq!(Isa::Neon.lanes(), 4);
    assert_eq!(Isa::Avx2.lanes(), 8);
    assert_eq!(Isa::Avx512.lanes(), 16);
}

#[test]
fn unavailable_isa_returns_isa_unavailable() {
    let unavailable: Vec<Isa> = Isa::ALL.into_iter().filter(|i| !i.is_available()).collect();
    // x86_64 never has NEON and aarch64 never has AVX2, so there is always one.
    assert!(!unavailable.is_empty());
    #[cfg(target_arch = "x86_64")]
    assert!(unavailable.contains(&Isa::Neon));
    #[cfg(target_arch = "aarch64")]
    {
        assert!(unavailable.contains(&Isa::Avx2));
        assert!(unavailable.contains(&Isa::Avx512));
    }

    for isa in unavailable {
        let expected = IsaUnavailable {
            requested: isa,
            detected: Isa::detect(),
        };
        assert_eq!(Kernels::new(isa), Err(expected));
        assert_eq!(Kernels::set_process_isa(isa), Err(expected));
        let message = expected.to_string();
        assert!(
            message.contains(isa.name()) && message.contains(Isa::detect().name()),
            "message {message:?} must name both paths"
        );
    }
}

#[test]
fn available_isa_constructs_and_detect_is_available() {
    assert!(Isa::Scalar.is_available());
    assert!(Isa::detect().is_available());
    for isa in Isa::ALL.into_iter().filter(|i| i.is_available()) {
        assert_eq!(Kernels::new(isa).map(|k| k.isa()), Ok(isa));
    }
    assert_eq!(Kernels::scalar().isa(), Isa::Scalar);
    #[cfg(target_arch = "aarch64")]
    assert_eq!(Isa::detect(), Isa::Neon);
}

#[test]
fn set_process_isa_changes_process_kernels() {
    // The only test in this binary that touches the process-wide path; the
    // others construct their `Kernels` explicitly.
    Kernels::set_process_isa(Isa::Scalar).expect("scalar is always available");
    assert_eq!(Kernels::process().isa(), Isa::Scalar);
    let fastest = Isa::detect();
    Kernels::set_process_isa(fastest).expect("the detected path is available");
    assert_eq!(Kernels::process().isa(), fastest);
}
