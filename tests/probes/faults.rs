//! The fault tests' table. Each file lists its fault tests with the reason each must produce, in
//! one [`faults!`] table; the macro makes each row a test that runs the fault (a function of the
//! same name, returning what it produced) and asserts the row's reason, and gathers the rows in
//! the file's `FAULTS`, which `main.rs` checks against `Reason::ALL`.
//!
//! So the promise "every reason is produced by a real fault" is held by structure: a reason
//! added to the table in `src/reason.rs` without a row, or a reason's last row removed, fails
//! the meta-test; a row whose fault does not produce its reason fails its own test; a fault
//! function left out of the table is dead code (an error under `clippy -D warnings`).

use pathprobe::probe::ProbeResult;
use pathprobe::reason::Reason;

/// One row: a fault test and the reason it asserts.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    /// The test's (and its fault function's) name.
    pub test: &'static str,
    /// The reason the fault must produce.
    pub reason: Reason,
}

/// What a fault function hands back: the results to check, each with words for a failure.
pub trait Produced {
    /// Each result's reason and how to tell it apart in a message.
    fn reasons(&self) -> Vec<(Reason, String)>;
}

impl Produced for ProbeResult {
    fn reasons(&self) -> Vec<(Reason, String)> {
        vec![(self.reason, format!("error: {:?}", self.error))]
    }
}

/// Several results, each named (the kind or the status that was tried).
impl Produced for Vec<(String, ProbeResult)> {
    fn reasons(&self) -> Vec<(Reason, String)> {
        self.iter()
            .map(|(case, r)| (r.reason, format!("{case}: error: {:?}", r.error)))
            .collect()
    }
}

/// Asserts that everything a fault produced has the row's reason.
pub fn assert_produced(test: &str, want: Reason, produced: &impl Produced) {
    let reasons = produced.reasons();
    assert!(!reasons.is_empty(), "{test} produced no result to check");
    for (got, context) in reasons {
        assert_eq!(got, want, "{test}: {context}");
    }
}

/// `faults! { fault_fn => Reason, … }`: one test per row (in a `fault` submodule, named after
/// its function) asserting that `fault_fn().await` produced `Reason`, and the file's `FAULTS`.
macro_rules! faults {
    ($($name:ident => $reason:ident,)+) => {
        /// This file's fault tests, each with the reason it must produce.
        pub const FAULTS: &[crate::faults::Fault] = &[
            $(crate::faults::Fault { test: stringify!($name), reason: pathprobe::reason::Reason::$reason },)+
        ];

        /// One test per row of the table: runs the fault, asserts its reason.
        mod fault {
            $(
                #[tokio::test]
                async fn $name() {
                    let produced = super::$name().await;
                    crate::faults::assert_produced(stringify!($name), pathprobe::reason::Reason::$reason, &produced);
                }
            )+
        }
    };
}

pub(crate) use faults;
