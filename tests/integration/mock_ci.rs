//! `examples/ci/mock-ci.sh`, the CI job a user copies, run as written against this build's binary:
//! start `pfgate mock`, drive it with a client, check the journal through the admin API, stop it.

use std::path::Path;
use std::process::Command;

use crate::interop::{interop_available, run, TOOL_TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ci_example_script_starts_the_mock_drives_it_checks_the_journal_and_stops_it() {
    if !interop_available(
        "the_ci_example_script_starts_the_mock_drives_it_checks_the_journal_and_stops_it",
        pfgate::testing::test_skips::Needs::Tools("bash, curl and python3"),
        &["bash", "curl", "python3"],
        &[],
    )
    .await
    {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci/mock-ci.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).env("PFGATE", env!("CARGO_BIN_EXE_pfgate"));
    let out = run(cmd, TOOL_TIMEOUT).await.expect_success();
    assert!(
        out.stdout.contains("mock-ci: OK (2 PfAuthUser_5 calls"),
        "{}",
        out.report()
    );
}
