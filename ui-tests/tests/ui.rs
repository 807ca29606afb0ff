//! The diagnostics of `#[cancellable]` and the shapes it accepts.
//!
//! `ui/fail/*.rs` must fail to compile with exactly the errors in the `.stderr`
//! file next to each; `ui/pass/*.rs` must compile and run. After a deliberate change
//! of a message, regenerate the snapshots with
//! `TRYBUILD=overwrite cargo test -p ui-tests` and review the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/fail/*.rs");
    cases.pass("ui/pass/*.rs");
}
