//! `pfgate completions SHELL` and `pfgate man`: shell completions and the pfgate(1) manual page,
//! generated from the clap definitions in [`crate::cli`] at run time, so they always describe the
//! binary that prints them. `docs/man/pfgate.1` is the output of `pfgate man`, committed for
//! readers and packagers; `tests/integration/cli_docs.rs` fails when it drifts.

use std::io::{self, Write};

use clap::CommandFactory;
pub use clap_complete::Shell;

use crate::cli::Cli;

/// The binary's name as shells and manual sections know it.
const BIN: &str = "pfgate";

/// Writes the completion script for `shell`.
pub fn completions(shell: Shell, out: &mut dyn Write) -> io::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, BIN, out);
    out.flush()
}

/// Writes pfgate(1) in roff: name, synopsis, description and options of `pfgate`, then one
/// section per command (and nested command) with its synopsis, description and options, so one
/// page documents every command — rather than clap_mangen's list pointing at per-command pages
/// that pfgate does not ship.
pub fn man(out: &mut dyn Write) -> io::Result<()> {
    let command = Cli::command();
    let top = clap_mangen::Man::new(command.clone());
    let mut page = Vec::new();
    top.render_title(&mut page)?;
    top.render_name_section(&mut page)?;
    top.render_synopsis_section(&mut page)?;
    top.render_description_section(&mut page)?;
    top.render_options_section(&mut page)?;
    for sub in command.get_subcommands() {
        subcommand_section(&mut page, BIN, sub)?;
    }
    top.render_version_section(&mut page)?;
    out.write_all(without_repeated_preamble(&String::from_utf8_lossy(&page)).as_bytes())?;
    out.flush()
}

/// Each clap_mangen render starts with the two lines defining the `Aq` string; the page needs
/// them once, at the top.
fn without_repeated_preamble(page: &str) -> String {
    let mut seen = std::collections::HashSet::new();
    let mut out = String::with_capacity(page.len());
    for line in page.lines() {
        let preamble = line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq");
        if preamble && !seen.insert(line) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// One `.SH` section for `pfgate <sub>` and, below it, its own subcommands.
fn subcommand_section(out: &mut dyn Write, parent: &str, sub: &clap::Command) -> io::Result<()> {
    if sub.get_name() == "help" {
        return Ok(());
    }
    let full = format!("{parent} {}", sub.get_name());
    let qualified = sub.clone().bin_name(&full).display_name(&full);
    let man = clap_mangen::Man::new(qualified);
    writeln!(out, ".SH \"{}\"", roff_escape(&full.to_uppercase()))?;
    let mut section = Vec::new();
    man.render_synopsis_section(&mut section)?;
    man.render_description_section(&mut section)?;
    man.render_options_section(&mut section)?;
    // Below the subcommand's own `.SH`, its parts are sub-sections.
    let text = String::from_utf8_lossy(&section).replace(".SH ", ".SS ");
    out.write_all(text.as_bytes())?;
    for nested in sub.get_subcommands() {
        subcommand_section(out, &full, nested)?;
    }
    Ok(())
}

/// Escapes what roff would read as a request or escape in a section title.
fn roff_escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}
