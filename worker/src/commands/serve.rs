//! `worker` (serve the queue) — being written.

use std::process::ExitCode;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {}

pub fn run(_args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("worker serve is not built yet")
}
