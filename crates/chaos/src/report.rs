//! What each fault test prints (with `--nocapture`) and asserts: how much was injected, the
//! invariant violations (there must be none) and how long the group took to converge once the
//! faults stopped.

use std::fmt;
use std::time::Duration;

use crate::ledger::Ledger;

/// The outcome of one fault test.
#[derive(Debug, Clone, Default)]
pub struct FaultReport {
    /// Which fault.
    pub fault: String,
    /// How many faults were injected.
    pub injected: u64,
    /// What those were, in words.
    pub detail: String,
    /// Every invariant violation seen.
    pub violations: Vec<String>,
    /// From the end of the faults to convergence (virtual time in paused-time tests).
    pub converged_in: Duration,
    /// Instance counts checked, and the largest seen against the limit.
    pub counts: String,
    /// `Destroy` calls seen, by reason.
    pub destroys: String,
}

impl FaultReport {
    /// A report of `fault`, with the counts, destroys and violations of `ledger` (plus `extra`
    /// violations found by the final checks).
    pub fn new(
        fault: &str,
        injected: u64,
        detail: impl Into<String>,
        ledger: &Ledger,
        extra: Vec<String>,
        converged_in: Duration,
    ) -> FaultReport {
        let c = ledger.counts();
        let mut by_reason = std::collections::BTreeMap::<String, usize>::new();
        for d in ledger.destroys() {
            *by_reason.entry(d.reason).or_default() += 1;
        }
        let destroys = if by_reason.is_empty() {
            "none".to_string()
        } else {
            by_reason
                .iter()
                .map(|(r, n)| format!("{n} {r}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut violations = ledger.violations();
        violations.extend(extra);
        FaultReport {
            fault: fault.to_string(),
            injected,
            detail: detail.into(),
            violations,
            converged_in,
            counts: format!(
                "{} counts, at most {} (limit {}), {} gaps",
                c.checks,
                c.max_seen,
                ledger.limit(),
                c.gaps
            ),
            destroys,
        }
    }

    /// Prints the report to stderr and fails the test if any invariant was violated.
    ///
    /// # Panics
    /// On any violation, listing them.
    pub fn finish(&self) {
        eprintln!("{self}");
        assert!(
            self.violations.is_empty(),
            "{}: {} invariant violation(s):\n  {}",
            self.fault,
            self.violations.len(),
            self.violations.join("\n  ")
        );
    }
}

impl fmt::Display for FaultReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "chaos | {}", self.fault)?;
        writeln!(f, "  injected:     {} ({})", self.injected, self.detail)?;
        writeln!(f, "  violations:   {}", self.violations.len())?;
        writeln!(
            f,
            "  converged in: {:.2?} after the faults stopped",
            self.converged_in
        )?;
        writeln!(f, "  instances:    {}", self.counts)?;
        write!(f, "  destroys:     {}", self.destroys)
    }
}
