//! The compile-fail suite: every forbidden move in `ui-tests/*.rs` must fail to compile, with
//! the error its `.stderr` snapshot shows; the cases in `ui-tests/pass/` must compile and run.
//!
//! The snapshots depend on the compiler version pinned in `rust-toolchain.toml`. After a
//! deliberate change, regenerate them with `TRYBUILD=overwrite cargo test --test compile_fail`
//! and read every diff.

#[test]
fn forbidden_moves_do_not_compile() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui-tests/*.rs");
    cases.pass("ui-tests/pass/*.rs");
}
