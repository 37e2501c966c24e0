//! `worker procedural` (being written).

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ProceduralArgs {}

pub fn run(_args: ProceduralArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("worker procedural is not built yet")
}
