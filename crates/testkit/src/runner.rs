//! The runner of `harness = false` test binaries (suites that re-execute themselves as a
//! child process, such as a supervisor or a crashing writer): it honours what cargo and
//! nextest pass (`--list`, `--ignored`, `--exact`, a name filter), runs each selected test,
//! catches its panic, and prints libtest's lines and summary.
//!
//! ```no_run
//! use std::process::ExitCode;
//! fn main() -> ExitCode {
//!     podvisor_testkit::runner::run(vec![("adds", || assert_eq!(1 + 1, 2))], |t| t())
//! }
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;

/// What the command line selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `--list`: print the names only.
    pub list: bool,
    /// `--ignored`: run (or list) only ignored tests; these suites have none.
    pub ignored: bool,
    /// `--exact`: the filter must equal the name.
    pub exact: bool,
    /// The name filter (substring unless `exact`).
    pub filter: Option<String>,
}

impl Selection {
    /// Parses the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Selection {
        let mut s = Selection::default();
        for a in args {
            match a.as_str() {
                "--list" => s.list = true,
                "--ignored" => s.ignored = true,
                "--exact" => s.exact = true,
                _ if a.starts_with('-') => {}
                _ if s.filter.is_none() => s.filter = Some(a),
                _ => {}
            }
        }
        s
    }

    /// Whether the test `name` is selected.
    pub fn selects(&self, name: &str) -> bool {
        if self.ignored {
            return false;
        }
        match &self.filter {
            None => true,
            Some(f) if self.exact => f == name,
            Some(f) => name.contains(f.as_str()),
        }
    }
}

/// Runs the selected `tests` with `run_one` (the process's own arguments decide), printing
/// libtest's lines; failure if any test panicked.
pub fn run<T>(tests: Vec<(&'static str, T)>, run_one: impl Fn(T)) -> ExitCode {
    run_selected(&Selection::parse(std::env::args().skip(1)), tests, run_one)
}

/// [`run`] with an explicit selection.
pub fn run_selected<T>(
    sel: &Selection,
    tests: Vec<(&'static str, T)>,
    run_one: impl Fn(T),
) -> ExitCode {
    if sel.list {
        for (name, _) in &tests {
            if sel.selects(name) {
                println!("{name}: test");
            }
        }
        return ExitCode::SUCCESS;
    }
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, t) in tests {
        if !sel.selects(name) {
            continue;
        }
        ran += 1;
        match catch_unwind(AssertUnwindSafe(|| run_one(t))) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(name);
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        ran - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn sel(args: &[&str]) -> Selection {
        Selection::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn filters_follow_libtest() {
        assert!(sel(&[]).selects("a_b"));
        assert!(sel(&["b"]).selects("a_b"));
        assert!(!sel(&["b", "--exact"]).selects("a_b"));
        assert!(sel(&["--exact", "a_b"]).selects("a_b"));
        assert!(!sel(&["--ignored"]).selects("a_b"));
        assert!(sel(&["--nocapture", "--test-threads=1"]).selects("x"));
    }

    #[test]
    fn a_panicking_test_fails_the_run_and_the_rest_still_run() {
        let ran = RefCell::new(Vec::new());
        let tests: Vec<(&'static str, bool)> = vec![("first", true), ("second", false)];
        let code = run_selected(&sel(&[]), tests, |ok| {
            ran.borrow_mut().push(ok);
            assert!(ok, "fails");
        });
        assert_eq!(code, ExitCode::FAILURE);
        assert_eq!(*ran.borrow(), vec![true, false]);
        let code = run_selected(
            &sel(&["first"]),
            vec![("first", ()), ("second", ())],
            |_| panic!("not selected"),
        );
        assert_eq!(code, ExitCode::FAILURE);
        let code = run_selected(&sel(&["none"]), vec![("first", ())], |_| panic!("filtered"));
        assert_eq!(code, ExitCode::SUCCESS);
    }
}
