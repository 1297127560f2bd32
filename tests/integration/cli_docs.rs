//! `pfgate completions SHELL` and `pfgate man` through the real binary: each output names every
//! command, and the committed `docs/man/pfgate.1` is exactly what `pfgate man` prints (regenerate
//! it with `cargo run -- man > docs/man/pfgate.1`).
//!
//! The list of commands is read from `pfgate --help` (clap's own help renderer, not the
//! completion or manual generators under test), so a command added later is checked too.

use crate::cli::bin;

/// Runs pfgate with `args`; asserts success; returns standard output.
fn stdout_of(args: &[&str]) -> String {
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "pfgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The command names of the "Commands:" section of `pfgate <args> --help`, without `help`.
fn commands_in_help(args: &[&str]) -> Vec<String> {
    let mut argv = args.to_vec();
    argv.push("--help");
    let help = stdout_of(&argv);
    let Some((_, rest)) = help.split_once("Commands:\n") else {
        return Vec::new();
    };
    rest.lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every command path: `["serve"]`, `["users", "import"]` …
fn all_commands() -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for top in commands_in_help(&[]) {
        let nested = commands_in_help(&[top.as_str()]);
        all.push(vec![top.clone()]);
        for n in nested {
            all.push(vec![top.clone(), n]);
        }
    }
    assert!(all.len() > 15, "implausibly few commands: {all:?}");
    assert!(all.iter().any(|c| c == &["users", "import"]), "{all:?}");
    all
}

#[test]
fn completions_for_each_shell_name_every_command() {
    let commands = all_commands();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let script = stdout_of(&["completions", shell]);
        assert!(script.len() > 1000, "{shell}: {} bytes", script.len());
        for path in &commands {
            let name = path.last().unwrap();
            assert!(
                script.contains(name.as_str()),
                "{shell} completion lacks {path:?}"
            );
        }
    }
    // The script is for this binary's options too, not only its command names.
    assert!(stdout_of(&["completions", "bash"]).contains("--pin-sha256"));
    let refused = bin().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
}

#[test]
fn man_page_has_a_section_for_every_command() {
    let page = stdout_of(&["man"]);
    assert!(
        page.contains(".TH pfgate 1"),
        "{}",
        &page[..page.len().min(300)]
    );
    for path in all_commands() {
        let title = format!("pfgate {}", path.join(" "))
            .to_uppercase()
            .replace('-', "\\-");
        assert!(
            page.contains(&format!(".SH \"{title}\"\n")),
            "no section {title}"
        );
    }
    assert!(
        page.contains("\\-\\-pin\\-sha256"),
        "options are documented"
    );
}

#[test]
fn committed_man_page_is_what_pfgate_man_prints() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/man/pfgate.1")).unwrap();
    assert!(
        committed == stdout_of(&["man"]),
        "docs/man/pfgate.1 is stale: run `cargo run -- man > docs/man/pfgate.1`"
    );
}
