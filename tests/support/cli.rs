//! Checks of a binary's command line (clap), for the binaries' own unit tests.

/// The checks both binaries' tests run: every argument and subcommand has help text, and
/// `--help` opens with the binary's own description (`about_prefix`), not the crate's.
pub fn check_help(cmd: &clap::Command, about_prefix: &str) {
    let missing = undocumented(cmd);
    assert!(missing.is_empty(), "arguments without help text: {missing:#?}");
    let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
    assert!(about.starts_with(about_prefix), "--help opens with {about:?}, expected {about_prefix:?}");
}

/// Every argument and subcommand, at every depth, without help text: `PATH: --flag` or
/// `PATH: <ARG>` (clap's own `--help`/`--version` excepted). Empty when all are documented.
pub fn undocumented(cmd: &clap::Command) -> Vec<String> {
    let mut out = Vec::new();
    walk(cmd, cmd.get_name().to_string(), &mut out);
    out
}

fn walk(cmd: &clap::Command, path: String, out: &mut Vec<String>) {
    for a in cmd.get_arguments() {
        let id = a.get_id().as_str();
        if a.is_hide_set() || id == "help" || id == "version" {
            continue;
        }
        if a.get_help().is_none() && a.get_long_help().is_none() {
            let name = a.get_long().map(|l| format!("--{l}")).unwrap_or_else(|| format!("<{}>", id.to_uppercase()));
            out.push(format!("{path}: {name}"));
        }
    }
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let sub_path = format!("{path} {}", sub.get_name());
        if sub.get_about().is_none() && sub.get_long_about().is_none() {
            out.push(format!("{sub_path}: (no description)"));
        }
        walk(sub, sub_path, out);
    }
}
