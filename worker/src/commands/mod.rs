//! One file per subcommand: its clap arguments and its `run`.

pub mod bench;
pub mod cleanup;
pub mod procedural;
pub mod run;
pub mod run_shard;
pub mod sample_labels;
pub mod serve;
pub mod synthesize;
pub mod train_ddpm;
pub mod train_spade;

/// Runs a command's async body to its end, then drops the runtime without waiting for its
/// blocking threads: a job stopped by a signal does not wait for the batch its model
/// thread is computing (the result is unused), and neither does the exit.
pub(crate) fn block_on_then_leave<T>(rt: tokio::runtime::Runtime, body: impl std::future::Future<Output = T>) -> T {
    let result = rt.block_on(body);
    rt.shutdown_background();
    result
}
