//! [`Spread`]: one run's pipelines on several devices (one per GPU, `--device cuda:all`)
//! behind one [`Pipeline`]. Each batch (each shard, through
//! [`Pipeline::generate_batches`]) goes to the device with the fewest in hand, so a worker's
//! job slots (`--concurrency`) spread over its GPUs; the model cache, the
//! queue connection and the process are shared. A sample depends only on its seed, so
//! which device makes it does not change it (beyond float rounding between devices).

use std::sync::{Arc, Mutex};

use shared::job::{Halted, Pipeline, Sample};

/// Pipelines of one run, one per device, used least-busy first.
pub struct Spread {
    pipes: Vec<Arc<dyn Pipeline>>,
    busy: Mutex<Vec<usize>>,
}

impl Spread {
    /// # Panics
    /// If `pipes` is empty.
    pub fn new(pipes: Vec<Arc<dyn Pipeline>>) -> Self {
        assert!(!pipes.is_empty(), "Spread needs at least one pipeline");
        let busy = Mutex::new(vec![0; pipes.len()]);
        Spread { pipes, busy }
    }

    /// Takes the least busy device (the lowest index on ties) and counts it busy.
    fn take(&self) -> usize {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let i = (0..busy.len()).min_by_key(|&i| busy[i]).expect("at least one device");
        busy[i] += 1;
        i
    }
}

/// Builds a pipeline on each device (`name` says which, for the log): those that build,
/// and why each other did not. A GPU whose models do not load (a dead or busy card) is
/// left out while another builds, so one bad card of eight does not stop the other seven;
/// when none builds, the error names each device and its cause.
pub fn build_each<D, P>(devices: &[D], name: impl Fn(&D) -> String, mut build: impl FnMut(&D) -> anyhow::Result<P>) -> anyhow::Result<(Vec<P>, Vec<String>)> {
    let (mut built, mut failed) = (Vec::new(), Vec::new());
    for d in devices {
        match build(d) {
            Ok(p) => built.push(p),
            Err(e) => failed.push(format!("{}: {e:#}", name(d))),
        }
    }
    if built.is_empty() {
        anyhow::bail!("the pipeline builds on none of the {} devices ({})", devices.len(), failed.join("; "));
    }
    Ok((built, failed))
}

/// Counts a device free again when its batch ends, panics included.
struct Release<'a>(&'a Spread, usize);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.busy.lock().unwrap_or_else(|p| p.into_inner())[self.1] -= 1;
    }
}

impl Pipeline for Spread {
    fn generate(&self, indices: &[u64]) -> shared::Result<Vec<Sample>> {
        let i = self.take();
        let _release = Release(self, i);
        self.pipes[i].generate(indices)
    }

    /// A shard's batches all go to one device (the least busy when it starts), so its
    /// stages overlap there.
    fn generate_batches(&self, indices: &[u64], batch: usize, halted: Halted<'_>, sink: &mut dyn FnMut(shared::Result<Vec<Sample>>) -> bool) {
        let i = self.take();
        let _release = Release(self, i);
        self.pipes[i].generate_batches(indices, batch, halted, sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    /// A device whose build fails is left out and named; none building is an error naming
    /// each.
    #[test]
    fn a_device_that_does_not_build_is_left_out() {
        let name = |d: &u32| format!("cuda:{d}");
        let (built, failed) = build_each(&[0u32, 1, 2], name, |&d| if d == 1 { anyhow::bail!("device lost") } else { Ok(d) }).unwrap();
        assert_eq!((built, failed), (vec![0, 2], vec!["cuda:1: device lost".to_string()]));
        let e = build_each(&[0u32, 1], name, |&d| -> anyhow::Result<u32> { anyhow::bail!("no memory on {d}") }).unwrap_err().to_string();
        assert!(e.contains("none of the 2 devices") && e.contains("cuda:0: no memory on 0; cuda:1: no memory on 1"), "{e}");
    }

    /// Records which device ran (and gives it as each sample's seed), and holds each batch
    /// until every slot has one in hand.
    struct Device {
        id: usize,
        ran: Arc<Mutex<Vec<usize>>>,
        barrier: Arc<Barrier>,
    }

    impl Pipeline for Device {
        fn generate(&self, indices: &[u64]) -> shared::Result<Vec<Sample>> {
            self.ran.lock().unwrap().push(self.id);
            self.barrier.wait();
            Ok(indices
                .iter()
                .map(|&i| Sample { index: i, seed: self.id as u64, image: shared::RgbImage::new(1, 1), label: shared::LabelMap::new(1, 1, 0), extra: Default::default() })
                .collect())
        }
    }

    #[test]
    fn concurrent_batches_go_to_different_devices() {
        let (ran, barrier) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Barrier::new(3)));
        let pipes: Vec<Arc<dyn Pipeline>> = (0..3).map(|id| Arc::new(Device { id, ran: ran.clone(), barrier: barrier.clone() }) as Arc<dyn Pipeline>).collect();
        let spread = Arc::new(Spread::new(pipes));
        // Three slots at once: each device gets one (a device given two would deadlock the
        // barrier, which needs three batches in hand).
        let slots: Vec<_> = (0..3u64)
            .map(|s| {
                let spread = spread.clone();
                std::thread::spawn(move || spread.generate(&[s * 10, s * 10 + 1]).unwrap())
            })
            .collect();
        for (s, h) in slots.into_iter().enumerate() {
            assert_eq!(h.join().unwrap().iter().map(|x| x.index).collect::<Vec<_>>(), vec![s as u64 * 10, s as u64 * 10 + 1]);
        }
        let mut ran = ran.lock().unwrap().clone();
        ran.sort();
        assert_eq!(ran, vec![0, 1, 2]);
        assert_eq!(*spread.busy.lock().unwrap(), vec![0, 0, 0], "every device counted free again");

        // Three jobs of three batches at once: each job stays on one device, its own.
        let jobs: Vec<_> = (0..3u64)
            .map(|s| {
                let spread = spread.clone();
                std::thread::spawn(move || {
                    let mut devices = Vec::new();
                    spread.generate_batches(&[s * 10, s * 10 + 1, s * 10 + 2], 1, &shared::job::never_halted, &mut |r| {
                        devices.extend(r.unwrap().iter().map(|x| x.seed));
                        true
                    });
                    devices
                })
            })
            .collect();
        let mut used: Vec<u64> = jobs.into_iter().map(|h| h.join().unwrap()).inspect(|d| assert!(d.len() == 3 && d.iter().all(|&x| x == d[0]), "{d:?}")).map(|d| d[0]).collect();
        used.sort();
        assert_eq!(used, vec![0, 1, 2]);
        assert_eq!(*spread.busy.lock().unwrap(), vec![0, 0, 0]);
    }
}
