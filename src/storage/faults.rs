//! Fault injection for the storage engine's file system calls. Every write, sync, rename,
//! preallocation and truncation of a data file asks [`check`] first; a plan installed on the
//! shard's thread can make the call fail (ENOSPC, EIO) or tear it (a write that stores only
//! a prefix of its bytes, then fails). Tests install plans directly; the broker installs one
//! from the hidden `petrel serve --inject-faults` flag, for black-box fault tests.
//!
//! With no plan installed (production), [`check`] is one thread-local read per call.

use std::cell::RefCell;

/// A file system call that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    Write,
    Sync,
    Rename,
    Allocate,
    Truncate,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The call fails with ENOSPC and changes nothing.
    NoSpace,
    /// The call fails with EIO and changes nothing.
    Io,
    /// A write stores its first half (rounded down to the I/O alignment), then fails with
    /// EIO. Other calls treat it as `Io`.
    Torn,
}

impl FaultKind {
    pub fn error(self) -> std::io::Error {
        match self {
            FaultKind::NoSpace => std::io::Error::from_raw_os_error(libc::ENOSPC),
            FaultKind::Io | FaultKind::Torn => std::io::Error::from_raw_os_error(libc::EIO),
        }
    }
}

/// Fails `count` calls of `op` after letting `skip` of them through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    pub op: FaultOp,
    pub kind: FaultKind,
    pub skip: u64,
    pub count: u64,
    /// Only calls on paths containing this (e.g. a partition's directory name).
    pub path_contains: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    rules: Vec<(FaultRule, u64)>,
    injected: u64,
}

/// Rules in a spec, at most this many (a spec is a test's or an operator's, but still input).
const RULES_MAX: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("fault spec `{spec}`: {reason}")]
pub struct FaultSpecError {
    spec: String,
    reason: String,
}

impl FaultPlan {
    pub fn new(rules: Vec<FaultRule>) -> FaultPlan {
        FaultPlan {
            rules: rules.into_iter().map(|rule| (rule, 0)).collect(),
            injected: 0,
        }
    }

    /// Parses `op:kind[:skip=N][:count=N][:path=TEXT],...`, e.g.
    /// `write:enospc:skip=100:count=50,sync:eio:count=1`. `count` defaults to 1, `skip` to 0.
    pub fn parse(spec: &str) -> Result<FaultPlan, FaultSpecError> {
        let fail = |reason: String| FaultSpecError {
            spec: spec.to_string(),
            reason,
        };
        let mut rules = Vec::new();
        for text in spec.split(',').filter(|text| !text.trim().is_empty()) {
            if rules.len() == RULES_MAX {
                return Err(fail(format!("more than {RULES_MAX} rules")));
            }
            let mut parts = text.trim().split(':');
            let op = match parts.next() {
                Some("write") => FaultOp::Write,
                Some("sync") => FaultOp::Sync,
                Some("rename") => FaultOp::Rename,
                Some("allocate") => FaultOp::Allocate,
                Some("truncate") => FaultOp::Truncate,
                other => return Err(fail(format!("unknown call {other:?}"))),
            };
            let kind = match parts.next() {
                Some("enospc") => FaultKind::NoSpace,
                Some("eio") => FaultKind::Io,
                Some("torn") => FaultKind::Torn,
                other => return Err(fail(format!("unknown fault {other:?}"))),
            };
            let mut rule = FaultRule {
                op,
                kind,
                skip: 0,
                count: 1,
                path_contains: None,
            };
            for option in parts {
                let (name, value) = option
                    .split_once('=')
                    .ok_or_else(|| fail(format!("`{option}` is not name=value")))?;
                let number = || {
                    value
                        .parse::<u64>()
                        .map_err(|_| fail(format!("{name}={value} is not a count")))
                };
                match name {
                    "skip" => rule.skip = number()?,
                    "count" => rule.count = number()?,
                    "path" => rule.path_contains = Some(value.to_string()),
                    other => return Err(fail(format!("unknown option {other}"))),
                }
            }
            rules.push(rule);
        }
        Ok(FaultPlan::new(rules))
    }

    /// The fault for this call, if a rule fires; counts the call against every matching rule.
    fn check(&mut self, op: FaultOp, path: &str) -> Option<FaultKind> {
        let mut fired = None;
        for (rule, seen) in &mut self.rules {
            let matches = rule.op == op
                && rule
                    .path_contains
                    .as_deref()
                    .is_none_or(|needle| path.contains(needle));
            if !matches {
                continue;
            }
            *seen += 1;
            let fires = *seen > rule.skip && *seen - rule.skip <= rule.count;
            if fires && fired.is_none() {
                fired = Some(rule.kind);
            }
        }
        if fired.is_some() {
            self.injected += 1;
        }
        fired
    }
}

thread_local! {
    static PLAN: RefCell<Option<FaultPlan>> = const { RefCell::new(None) };
}

/// Installs `plan` for this thread's storage calls (replacing any earlier plan).
pub fn install(plan: FaultPlan) {
    PLAN.with(|slot| *slot.borrow_mut() = Some(plan));
}

/// Removes this thread's plan; returns how many faults it injected.
pub fn clear() -> u64 {
    PLAN.with(|slot| slot.borrow_mut().take().map_or(0, |plan| plan.injected))
}

/// Faults injected on this thread so far by the installed plan.
pub fn injected() -> u64 {
    PLAN.with(|slot| slot.borrow().as_ref().map_or(0, |plan| plan.injected))
}

/// Asks the installed plan (if any) whether this call fails.
pub fn check(op: FaultOp, path: &std::path::Path) -> Option<FaultKind> {
    PLAN.with(|slot| {
        let mut slot = slot.borrow_mut();
        let plan = slot.as_mut()?;
        plan.check(op, &path.to_string_lossy())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_named() {
        let plan =
            FaultPlan::parse("write:enospc:skip=3:count=2, sync:eio:path=t-0").expect("parses");
        assert_eq!(
            plan.rules
                .iter()
                .map(|(rule, _)| rule.clone())
                .collect::<Vec<_>>(),
            vec![
                FaultRule {
                    op: FaultOp::Write,
                    kind: FaultKind::NoSpace,
                    skip: 3,
                    count: 2,
                    path_contains: None,
                },
                FaultRule {
                    op: FaultOp::Sync,
                    kind: FaultKind::Io,
                    skip: 0,
                    count: 1,
                    path_contains: Some("t-0".into()),
                },
            ]
        );
        for bad in [
            "fsync:eio",
            "write:boom",
            "write:eio:skip",
            "write:eio:skip=x",
            "write:eio:k=1",
        ] {
            let error = FaultPlan::parse(bad).expect_err(bad);
            assert!(error.to_string().contains(bad), "{error}");
        }
    }

    #[test]
    fn a_rule_fires_after_skip_for_count_calls_on_matching_paths() {
        let mut plan = FaultPlan::parse("write:torn:skip=2:count=2:path=a-0").expect("parses");
        let fired: Vec<bool> = (0..6)
            .map(|_| plan.check(FaultOp::Write, "/d/a-0/0.log").is_some())
            .collect();
        assert_eq!(fired, [false, false, true, true, false, false]);
        assert_eq!(plan.check(FaultOp::Write, "/d/b-0/0.log"), None);
        assert_eq!(plan.check(FaultOp::Sync, "/d/a-0/0.log"), None);
        assert_eq!(plan.injected, 2);
    }

    #[test]
    fn the_plan_is_per_thread_and_clear_reports_what_it_injected() {
        install(FaultPlan::parse("rename:eio:count=1").expect("parses"));
        let path = std::path::Path::new("/d/x");
        assert_eq!(check(FaultOp::Rename, path), Some(FaultKind::Io));
        assert_eq!(check(FaultOp::Rename, path), None);
        let other = std::thread::spawn(|| check(FaultOp::Rename, std::path::Path::new("/d/x")));
        assert_eq!(other.join().expect("thread"), None);
        assert_eq!(clear(), 1);
        assert_eq!(check(FaultOp::Rename, path), None);
    }
}
