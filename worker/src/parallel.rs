//! Data-parallel training over several devices of one backend (`worker train ddpm|spade
//! --device cuda:all`): how a batch is split ([`shares`]), each share computed on its
//! device in its own thread ([`each_share`], on a [`replica`] of the model), and the
//! gradients summed on the first device ([`sum_grads`]), where the one optimizer step is
//! taken. Each share's loss is weighted by its share of the batch, so the summed gradients
//! are the whole batch's: the step is the one a single device takes (up to rounding;
//! batch-norm statistics are each device's own, as in PyTorch's DDP without SyncBatchNorm).
//!
//! Every step moves the parameters out to each other device and its gradients back, through
//! Burn's `to_device`; nothing here overlaps that with compute.

use std::ops::Range;

use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::{AutodiffBackend, Backend};

/// The rows of a batch of `b` that each of `n` devices computes: contiguous, sizes
/// differing by at most one.
pub fn shares(b: usize, n: usize) -> Vec<Range<usize>> {
    let (each, extra) = (b / n.max(1), b % n.max(1));
    let mut start = 0;
    (0..n)
        .map(|i| {
            let len = each + usize::from(i < extra);
            start += len;
            start - len..start
        })
        .collect()
}

/// Refuses a batch that cannot give every device a row.
pub fn check_batch(batch: usize, devices: usize) -> anyhow::Result<()> {
    if devices == 0 {
        anyhow::bail!("training needs at least one device");
    }
    if batch < devices {
        anyhow::bail!("--batch {batch} is smaller than the {devices} devices it is split over; use a batch of at least {devices}");
    }
    Ok(())
}

/// `model` on device `i` of a data-parallel step: itself on the first device, a fork
/// (same parameter ids, its own autodiff leaves) on the others. A fork shares the model's
/// running states: use it only for models without any (the UNet).
pub fn replica<B: Backend, M: Module<B>>(model: M, i: usize, device: &B::Device) -> M {
    if i == 0 {
        model
    } else {
        model.fork(device)
    }
}

/// Runs `work(i, input_i, rows_i, device_i)` for each device, with [`shares`] of a batch of
/// `rows`: share 0 on this thread, each other share on a thread of its own. `inputs` has
/// one entry per device (clones of the models: they are `Send`, not `Sync`). A panic in a
/// share is an error naming it.
///
/// Share 0 stays on the calling thread because Burn's `RunningState` (spectral norm's `u`,
/// batch-norm statistics) keeps each thread's pending update apart: the model's own
/// states then advance exactly as in a single-device run. The other shares must compute
/// on copies with states of their own ([`SpadeTrainer`](crate::spade::train::SpadeTrainer)
/// makes them), whose updates are dropped, as DDP drops the buffers of all but rank 0.
pub fn each_share<D: Sync, R: Send, T: Send>(inputs: Vec<R>, devices: &[D], rows: usize, work: impl Fn(usize, R, Range<usize>, &D) -> T + Sync) -> anyhow::Result<Vec<T>> {
    check_batch(rows, devices.len())?;
    anyhow::ensure!(inputs.len() == devices.len(), "{} inputs for {} devices", inputs.len(), devices.len());
    let mut rows = shares(rows, devices.len()).into_iter();
    let mut inputs = inputs.into_iter();
    let (first, r0) = (inputs.next().expect("one input per device"), rows.next().expect("one share per device"));
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = inputs.zip(rows).zip(&devices[1..]).enumerate().map(|(i, ((input, r), device))| scope.spawn(move || work(i + 1, input, r, device))).collect();
        let own = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(0, first, r0, &devices[0])));
        // Every thread joined before the first error is returned (a panicked thread left
        // unjoined would make the scope panic without the share's message).
        let all: Vec<_> = std::iter::once(own).chain(handles.into_iter().map(|h| h.join())).collect();
        all.into_iter().enumerate().map(|(i, r)| r.map_err(|p| anyhow::anyhow!("data-parallel share {i} failed: {}", crate::backend::panic_text(&p)))).collect()
    })
}

/// The sum of each share's gradients (of `model`'s parameters), on the device of the
/// first. Each share's gradients must already be on that device (`GradientsParams::to_device`).
pub fn sum_grads<B: AutodiffBackend, M: AutodiffModule<B>>(model: &M, grads: Vec<GradientsParams>) -> GradientsParams {
    if grads.len() == 1 {
        return grads.into_iter().next().expect("one");
    }
    let mut sum = GradientsAccumulator::<M>::new();
    for g in grads {
        sum.accumulate(model, g);
    }
    sum.grads()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_batch_and_refuse_too_few_rows() {
        assert_eq!(shares(7, 3), vec![0..3, 3..5, 5..7]);
        assert_eq!(shares(4, 1), vec![0..4]);
        assert!(check_batch(1, 2).unwrap_err().to_string().contains("--batch 1 is smaller than the 2 devices"));
        let out = each_share(vec![10, 20], &["a", "b"], 5, |i, x, r, d| format!("{i}{x}{d}{r:?}")).unwrap();
        assert_eq!(out, vec!["010a0..3", "120b3..5"]);
        let e = each_share(vec![1, 2], &[(), ()], 4, |i, _, _, _| {
            if i == 1 {
                panic!("share blew up")
            }
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("share 1 failed: share blew up"), "{e}");
        // Several shares failing: the first one's message, every thread joined.
        let e = each_share(vec![(); 3], &[(), (), ()], 3, |i, _, _, _| {
            if i > 0 {
                panic!("share {i} blew up")
            }
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("share 1 failed: share 1 blew up"), "{e}");
        // Share 0 runs on the calling thread.
        let me = std::thread::current().id();
        let on = each_share(vec![(), ()], &[(), ()], 2, |_, _, _, _| std::thread::current().id() == me).unwrap();
        assert_eq!(on, vec![true, false]);
    }
}
