//! A model's weights as bytes: Burn named MessagePack at full precision, written by
//! training (models and checkpoints) and read by every load of a DDPM or SPADE network,
//! shape-checked against the architecture and, when `model.json` declares one, checked
//! against its sha256.

use anyhow::{bail, Context};
use burn::module::{Module, ModuleVisitor, Param};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Decodes weights read from `origin`, then checks them against the sha256 their
/// `model.json` declares ([`shared::artifact::check_weights_sha256`]): decoded first, so a
/// decode error says what is wrong (truncated, another architecture).
pub fn decode_checked<M>(weights: Vec<u8>, declared: Option<&str>, origin: &str, decode: impl FnOnce(Vec<u8>) -> anyhow::Result<M>) -> anyhow::Result<M> {
    // Hashed only when there is a sha256 to compare (older artifacts have none).
    let sha = declared.map(|_| shared::artifact::sha256_hex(&weights));
    let decoded = decode(weights)?;
    if let Some(sha) = sha {
        shared::artifact::check_weights_sha256(declared, &sha).map_err(|m| anyhow::anyhow!("{origin}: {m}"))?;
    }
    Ok(decoded)
}

/// A module's weights as bytes (named MessagePack, full precision).
pub fn module_to_bytes<B: Backend, M: Module<B>>(module: M) -> anyhow::Result<Vec<u8>> {
    NamedMpkBytesRecorder::<FullPrecisionSettings>::default().record(module.into_record(), ()).context("serialising weights")
}

/// The element count of weights saved by [`module_to_bytes`], as the coordinator's check
/// at submit counts it ([`shared::artifact::weights`]).
pub fn parameters_of(weights: &[u8]) -> anyhow::Result<u64> {
    shared::artifact::weights::check(weights).map(|s| s.parameters).map_err(|e| anyhow::anyhow!("the weights just encoded do not check: {e}"))
}

/// Loads weights saved by [`module_to_bytes`] into `module` (built from the same config),
/// checking every parameter's shape. `origin` names the file in errors.
pub fn module_from_bytes<B: Backend, M: Module<B>>(module: M, bytes: Vec<u8>, device: &B::Device, origin: &str) -> anyhow::Result<M> {
    let want = param_shapes(&module);
    let record = NamedMpkBytesRecorder::<FullPrecisionSettings>::default()
        .load::<M::Record>(bytes, device)
        .map_err(|e| anyhow::anyhow!("{origin}: not weights for this architecture: {e}"))?;
    // Burn panics (rather than erring) on some mismatches, e.g. a list of blocks of
    // another length; turn that into an error naming the file.
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| module.load_record(record))).map_err(|p| {
        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        anyhow::anyhow!("{origin}: weights do not match the architecture: {}", msg.split_whitespace().collect::<Vec<_>>().join(" "))
    })?;
    let got = param_shapes(&loaded);
    if got != want {
        let first = want.iter().zip(&got).position(|(a, b)| a != b).unwrap_or(want.len().min(got.len()));
        bail!(
            "{origin}: weights do not match the architecture: {} tensors expected, {} found; first mismatch at tensor {first}: expected {:?}, found {:?}",
            want.len(),
            got.len(),
            want.get(first),
            got.get(first)
        );
    }
    Ok(loaded)
}

struct Shapes(Vec<Vec<usize>>);
impl<B: Backend> ModuleVisitor<B> for Shapes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push(param.val().dims().to_vec());
    }
}

fn param_shapes<B: Backend, M: Module<B>>(m: &M) -> Vec<Vec<usize>> {
    let mut s = Shapes(Vec::new());
    m.visit(&mut s);
    s.0
}
