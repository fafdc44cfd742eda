//! Compile tests of `#[expose]`: every supported shape compiles (and its
//! generated constants say what they should), and every rejected shape fails
//! with a message that points at the offending tokens.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
