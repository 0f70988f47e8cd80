//! Property tests draw from one fixed seed, so every run (and CI) checks the same cases and a
//! failure reproduces. `PROPTEST_RNG_SEED=<u64>` picks another seed to explore further cases.
//!
//! A failing case's seed is saved beside the test file (`tests/<name>.proptest-regressions`) and
//! tried first on later runs; commit that file with the fix. `PROPTEST_DISABLE_FAILURE_PERSISTENCE`
//! turns this off.

use proptest::prelude::ProptestConfig;
use proptest::test_runner::{FileFailurePersistence, RngSeed};

/// The seed used unless `PROPTEST_RNG_SEED` is set.
pub const SEED: u64 = 0x5EED_C0DE_2026_1203;

/// Proptest's config (with its environment overrides) for `cases` cases from the fixed seed.
pub fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(cases);
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(SEED);
    }
    // The default (`SourceParallel`) looks for a lib.rs or main.rs above the test file, which
    // integration tests lack, warns, and then saves beside the file anyway: say so directly.
    if config.failure_persistence.is_some() {
        config.failure_persistence = Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        )));
    }
    config
}
