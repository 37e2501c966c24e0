//! Object storage: one [`Store`] over S3, a local directory or memory, rooted at the
//! output URL of a run spec.
//!
//! S3 settings come from the standard `AWS_*` variables (object_store's `from_env`: keys,
//! endpoint, region, web identity; not the CLI's profiles, which are refused by name);
//! they are never logged or written anywhere. object_store retries 5xx answers and dropped
//! connections itself (10 tries, 3 minutes); what still fails is a job failure the queue
//! retries, except a store this worker cannot reach or is refused by (the worker's fault:
//! [`crate::Error::is_worker_fault`]). Large objects are multipart uploads whose ids are recorded beside them
//! ([`Store::writer`]), so finalize can abort the ones a killed writer left open.

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};

pub mod conformance;

/// What [`Store::put_if_version`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swapped {
    /// Replaced; the new version's tag, if the store gave one.
    Done(Option<String>),
    /// Not replaced: the object is at another version now, or gone.
    Changed,
    /// Not replaced: this store has no conditional replace.
    Unsupported,
}

/// Where a run's output goes, as parsed from `output.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    S3 { bucket: String, prefix: String },
    Local { dir: std::path::PathBuf },
    Memory,
}

impl StoreUrl {
    /// `s3://bucket/prefix`, `file:///abs/path`, `memory://`, or a relative or absolute
    /// local path. The error says what was expected.
    pub fn parse(url: &str) -> std::result::Result<StoreUrl, String> {
        if url.trim().is_empty() {
            return Err("expected s3://bucket/prefix, file:///absolute/path or a local path, found an empty string".into());
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("expected s3://bucket/prefix, found {url:?} (no bucket)"));
            }
            let prefix = prefix.trim_matches('/');
            if !prefix.is_empty() {
                for part in prefix.split('/') {
                    check_key_part(part).map_err(|e| format!("{url:?}: {e}"))?;
                }
            }
            return Ok(StoreUrl::S3 { bucket: bucket.to_string(), prefix: prefix.to_string() });
        }
        if url == "memory://" {
            return Ok(StoreUrl::Memory);
        }
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!("expected file:///absolute/path, found {url:?}"));
            }
            return Ok(StoreUrl::Local { dir: path.into() });
        }
        if url.contains("://") {
            return Err(format!("expected s3://, file:// or a local path, found {url:?}"));
        }
        // `s3:/bucket` or `file:/path` is a mistyped URL, not a directory named `s3:`.
        if let Some(scheme) = ["s3:", "file:", "memory:"].iter().find(|s| url.starts_with(**s)) {
            return Err(format!("{url:?}: expected {scheme}// (two slashes), e.g. s3://bucket/prefix or file:///absolute/path"));
        }
        Ok(StoreUrl::Local { dir: url.into() })
    }
}

/// Refuses a prefix segment that would not be stored as written: empty (`a//b`), or one
/// object_store's own key encoding ([`object_store::path::PathPart`]) changes (`.`, `..`,
/// `~ % # [ ] * ?`…, controls, non-ASCII): listings would not match it.
pub(crate) fn check_key_part(part: &str) -> std::result::Result<(), String> {
    if part.is_empty() {
        return Err("the path has an empty segment (a double slash); expected names separated by single slashes".into());
    }
    if object_store::path::PathPart::from(part).as_ref() != part {
        // The character it changes (or, for `.` and `..`, the dot).
        let encoded = |c: &char| object_store::path::PathPart::from(c.to_string().as_str()).as_ref().len() != c.len_utf8();
        let c = part.chars().find(encoded).unwrap_or('.');
        return Err(format!("path segment {part:?} holds {c:?}, which object_store percent-encodes in keys (the objects would be stored under another name); use ASCII letters, digits and - _ . instead"));
    }
    Ok(())
}

/// `base/rel` for messages: one slash between, and `memory://` (whose slashes are the
/// scheme's) keeps both.
fn join_display(base: &str, rel: &str) -> String {
    if base.ends_with("://") {
        format!("{base}{rel}")
    } else {
        format!("{}/{rel}", base.trim_end_matches('/'))
    }
}

/// An object store plus the prefix everything lives under. Paths given to its methods are
/// relative to that prefix, `/`-separated.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// The same store's multipart API where it has one (S3, memory): uploads whose id is
    /// recorded beside the object, so finalize can abort the ones a crash left open.
    multipart: Option<Arc<dyn MultipartStore>>,
    prefix: String,
    display: String,
    /// A local store's root directory (the prefix is below it).
    local_root: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.display)
    }
}

/// Outcome of a create-only put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    AlreadyExists,
}

impl Store {
    /// Opens the store a URL names. A missing local directory is not created until an
    /// object is written into it.
    pub fn open(url: &str) -> Result<Store> {
        // The caller names the key (output.url, --out, a model's location).
        let parsed = StoreUrl::parse(url).map_err(|m| Error::Invalid { origin: "storage location".into(), key: url.into(), message: m })?;
        match parsed {
            StoreUrl::S3 { bucket, prefix } => {
                // object_store reads AWS_* variables and web identity / instance credentials,
                // not the CLI's profiles: a profile would be ignored without a word and the
                // writes made as whatever the machine's role is.
                // (Credentials object_store does read — keys, web identity, a container
                // endpoint — make such a variable harmless.)
                let read_here = ["AWS_ACCESS_KEY_ID", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"];
                for var in ["AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"] {
                    if std::env::var_os(var).is_some() && read_here.iter().all(|v| std::env::var_os(v).is_none()) {
                        return Err(Error::StorageAt {
                            path: url.into(),
                            message: format!("{var} is set, but profiles and credential files are not read here: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (e.g. from `aws configure export-credentials --format env`), or use web identity (IRSA) or instance credentials, and unset {var}"),
                            worker_fault: true,
                        });
                    }
                }
                // A missing secret or a bad region is this machine's setting, not the job's.
                let s3 = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&bucket).build().map_err(|e| Error::StorageAt {
                    path: url.into(),
                    message: store_error_text(e),
                    worker_fault: true,
                })?;
                let s3 = Arc::new(s3);
                Ok(Store { inner: s3.clone(), multipart: Some(s3), prefix, display: url.to_string(), local_root: None })
            }
            StoreUrl::Local { dir } => {
                // Nothing is created here: a directory appears with the first object written
                // into it, so a refused command leaves no trace. The store is rooted at the
                // nearest existing ancestor, the rest of the path is its prefix.
                let abs = std::path::absolute(&dir).map_err(|e| Error::io(&dir, e))?;
                let mut root = abs.clone();
                let mut rest: Vec<String> = Vec::new();
                while !root.is_dir() {
                    let (Some(name), Some(parent)) = (root.file_name(), root.parent()) else { break };
                    rest.push(name.to_string_lossy().into_owned());
                    root = parent.to_path_buf();
                }
                rest.reverse();
                // The directories still to be made are key segments of the store.
                for part in &rest {
                    check_key_part(part).map_err(|m| Error::Invalid {
                        origin: "storage location".into(),
                        key: url.into(),
                        message: format!("directories not yet made are object keys: {m}"),
                    })?;
                }
                let root = std::fs::canonicalize(&root).map_err(|e| Error::io(&root, e))?;
                let display = if rest.is_empty() { root.display().to_string() } else { root.join(rest.join("/")).display().to_string() };
                // fsync each object and its directory: a commit record that survives a power
                // loss must not point at files that did not.
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&root)?.with_automatic_cleanup(true).with_fsync(true);
                Ok(Store { inner: Arc::new(fs), multipart: None, prefix: rest.join("/"), display, local_root: Some(root) })
            }
            StoreUrl::Memory => Ok(Store::process_memory()),
        }
    }

    /// The process's one in-memory store, behind every `memory://` URL, so the parts of a
    /// run in one process (the embedded mode: `run.json`, the shards, finalize) see each
    /// other's objects. Nothing outlives the process; other processes cannot see it.
    fn process_memory() -> Store {
        static MEMORY: std::sync::OnceLock<Arc<object_store::memory::InMemory>> = std::sync::OnceLock::new();
        Store::over_memory(MEMORY.get_or_init(Default::default).clone())
    }

    /// A fresh in-memory store.
    pub fn memory() -> Store {
        Store::over_memory(Default::default())
    }

    fn over_memory(mem: Arc<object_store::memory::InMemory>) -> Store {
        Store { inner: mem.clone(), multipart: Some(mem), prefix: String::new(), display: "memory://".into(), local_root: None }
    }

    /// Wraps any object store (tests, custom back ends); large objects go through its
    /// generic multipart upload, whose id is not recorded.
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, prefix: &str, display: &str) -> Store {
        Store { inner, multipart: None, prefix: prefix.trim_matches('/').to_string(), display: display.to_string(), local_root: None }
    }

    /// [`Store::from_object_store`] for a store with a multipart API (S3, memory): large
    /// objects' upload ids are recorded beside them (see [`Store::writer`]).
    pub fn from_multipart_store<S: ObjectStore + MultipartStore>(inner: Arc<S>, prefix: &str, display: &str) -> Store {
        Store { inner: inner.clone(), multipart: Some(inner), prefix: prefix.trim_matches('/').to_string(), display: display.to_string(), local_root: None }
    }

    /// The same store, rooted one level further down (e.g. at a run's directory).
    pub fn child(&self, sub: &str) -> Store {
        let sub = sub.trim_matches('/');
        let prefix = if self.prefix.is_empty() { sub.to_string() } else { format!("{}/{}", self.prefix, sub) };
        let display = join_display(&self.display, sub);
        Store { inner: self.inner.clone(), multipart: self.multipart.clone(), prefix, display, local_root: self.local_root.clone() }
    }

    /// Where `rel` is on disk, for a local store (`None` for S3 and memory).
    pub fn local_path(&self, rel: &str) -> Option<std::path::PathBuf> {
        let root = self.local_root.as_ref()?;
        let mut p = root.clone();
        for part in self.prefix.split('/').chain(rel.split('/')).filter(|p| !p.is_empty()) {
            p.push(part);
        }
        Some(p)
    }

    /// A printable location (URL or absolute directory), for messages.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Where `rel` is, for messages.
    pub fn describe(&self, rel: &str) -> String {
        join_display(&self.display, rel)
    }

    fn path(&self, rel: &str) -> ObjPath {
        let rel = rel.trim_start_matches('/');
        if self.prefix.is_empty() {
            ObjPath::from(rel)
        } else {
            ObjPath::from(format!("{}/{}", self.prefix, rel))
        }
    }

    fn rel(&self, full: &ObjPath) -> String {
        let s = full.as_ref();
        if self.prefix.is_empty() {
            s.to_string()
        } else {
            s.strip_prefix(&self.prefix).unwrap_or(s).trim_start_matches('/').to_string()
        }
    }

    fn err(&self, rel: &str, e: object_store::Error) -> Error {
        let worker_fault = crate::error::storage_worker_fault(&e);
        Error::StorageAt { path: self.describe(rel), message: store_error_text(e), worker_fault }
    }

    /// Writes (or overwrites) an object.
    pub async fn put(&self, rel: &str, data: Bytes) -> Result<()> {
        self.inner.put(&self.path(rel), PutPayload::from(data)).await.map_err(|e| self.err(rel, e))?;
        Ok(())
    }

    /// Writes an object only if none exists at `rel` (S3 `If-None-Match: *`).
    pub async fn put_create(&self, rel: &str, data: Bytes) -> Result<Created> {
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.inner.put_opts(&self.path(rel), PutPayload::from(data), opts).await {
            Ok(_) => Ok(Created::Created),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Created::AlreadyExists),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Reads an object; `None` if it does not exist.
    pub async fn get(&self, rel: &str) -> Result<Option<Bytes>> {
        Ok(self.get_versioned(rel).await?.map(|(bytes, _)| bytes))
    }

    /// Reads an object with its version tag (S3's ETag; `None` where the store gives
    /// none), for [`Store::put_if_version`]; `None` if it does not exist.
    pub async fn get_versioned(&self, rel: &str) -> Result<Option<(Bytes, Option<String>)>> {
        match self.inner.get(&self.path(rel)).await {
            Ok(r) => {
                let tag = r.meta.e_tag.clone();
                Ok(Some((r.bytes().await.map_err(|e| self.err(rel, e))?, tag)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Replaces `rel` only while it is still at version `tag` (S3 `If-Match`): of two
    /// writers that read one version, one replaces it. [`Swapped::Unsupported`] where the
    /// store cannot (a local directory; a server that refuses `If-Match`).
    pub async fn put_if_version(&self, rel: &str, data: Bytes, tag: &str) -> Result<Swapped> {
        let opts = PutOptions { mode: PutMode::Update(object_store::UpdateVersion { e_tag: Some(tag.to_string()), version: None }), ..Default::default() };
        match self.inner.put_opts(&self.path(rel), PutPayload::from(data), opts).await {
            Ok(r) => Ok(Swapped::Done(r.e_tag)),
            Err(object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. }) => Ok(Swapped::Changed),
            Err(object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }) => Ok(Swapped::Unsupported),
            // A server that does not implement If-Match on PUT answers 501.
            Err(e) if e.to_string().contains("status code: 501") => Ok(Swapped::Unsupported),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// An object's bytes as a stream of chunks, for objects too large to hold (a run's
    /// `manifest.jsonl`, a tar); `None` if it does not exist. Errors name the object.
    pub async fn get_stream(&self, rel: &str) -> Result<Option<futures::stream::BoxStream<'static, Result<Bytes>>>> {
        let result = match self.inner.get(&self.path(rel)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err(rel, e)),
        };
        let (store, rel) = (self.clone(), rel.to_string());
        Ok(Some(result.into_stream().map(move |c| c.map_err(|e| store.err(&rel, e))).boxed()))
    }

    /// The sha256 (hex) and size of an object, read as a stream: the object is never held
    /// in memory whole. `None` if it does not exist.
    pub async fn sha256(&self, rel: &str) -> Result<Option<(String, u64)>> {
        self.sha256_tee(rel, None).await
    }

    /// [`Store::sha256`], with `read` given the object's bytes as a blocking reader, on
    /// another thread, as they stream by: what checks a file's content in the same pass as
    /// its hash. Its result comes back beside the hash (an error naming the object if it
    /// panicked); a reader that stops early is no longer fed (the hash goes on to the end).
    /// `None` if the object does not exist.
    #[allow(clippy::type_complexity)] // the hash, beside what the reader made of the bytes
    pub async fn sha256_read<T: Send + 'static>(&self, rel: &str, read: impl FnOnce(&mut dyn std::io::Read) -> T + Send + 'static) -> Result<Option<((String, u64), Result<T>)>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let reader = tokio::task::spawn_blocking(move || read(&mut std::io::BufReader::new(ChunkReader { rx, chunk: Bytes::new() })));
        let hashed = self.sha256_tee(rel, Some(tx)).await;
        let read = reader.await.map_err(|e| Error::format(self.describe(rel), format!("reading it stopped: {e}")));
        Ok(hashed?.map(|h| (h, read)))
    }

    /// [`Store::sha256`], also handing each chunk to `tee` as it streams by; one that hung
    /// up is no longer fed.
    async fn sha256_tee(&self, rel: &str, mut tee: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>) -> Result<Option<(String, u64)>> {
        use sha2::{Digest, Sha256};
        let Some(mut stream) = self.get_stream(rel).await? else { return Ok(None) };
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.try_next().await? {
            size += chunk.len() as u64;
            hasher.update(&chunk);
            if let Some(tx) = &tee {
                if tx.send(chunk).await.is_err() {
                    tee = None;
                }
            }
        }
        Ok(Some((hex::encode(hasher.finalize()), size)))
    }

    /// An object's metadata; `None` if it does not exist.
    async fn head(&self, rel: &str) -> Result<Option<object_store::ObjectMeta>> {
        match self.inner.head(&self.path(rel)).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Whether an object exists.
    pub async fn exists(&self, rel: &str) -> Result<bool> {
        Ok(self.head(rel).await?.is_some())
    }

    /// How long ago the store says an object was last written, by this machine's clock
    /// (zero if the store's clock is ahead); `None` if it does not exist.
    pub async fn age(&self, rel: &str) -> Result<Option<std::time::Duration>> {
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        Ok(self.head(rel).await?.map(|meta| std::time::Duration::from_millis(now_ms.saturating_sub(meta.last_modified.timestamp_millis()).max(0) as u64)))
    }

    /// The size of an object in bytes; `None` if it does not exist.
    pub async fn size(&self, rel: &str) -> Result<Option<u64>> {
        Ok(self.head(rel).await?.map(|meta| meta.size))
    }

    /// Copies an object within the store, overwriting `to` (S3 CopyObject: the bytes do not
    /// pass through this process; a hard link on a local directory). Atomic: `to` is the
    /// old object or the whole new one. `Ok(false)` if `from` does not exist.
    pub async fn copy(&self, from: &str, to: &str) -> Result<bool> {
        match self.inner.copy(&self.path(from), &self.path(to)).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(&format!("{from} -> {}", self.describe(to)), e)),
        }
    }

    /// Every object under `rel_prefix` (recursively), as paths relative to this store,
    /// sorted.
    pub async fn list(&self, rel_prefix: &str) -> Result<Vec<String>> {
        let prefix = self.path(rel_prefix);
        let metas: Vec<_> = self.inner.list(Some(&prefix)).try_collect().await.map_err(|e| self.err(rel_prefix, e))?;
        let mut out: Vec<String> = metas.iter().map(|m| self.rel(&m.location)).collect();
        out.sort();
        Ok(out)
    }

    /// Every object under `rel_prefix` (recursively), as paths relative to this store, in
    /// the order the store lists them (S3: by key; a directory: unordered), one page at a
    /// time: memory stays bounded however many objects there are. What counts, checks or
    /// scans a listing that may hold millions of entries uses this, not [`Store::list`].
    pub fn list_stream<'a>(&'a self, rel_prefix: &'a str) -> impl futures::Stream<Item = Result<String>> + 'a {
        let prefix = self.path(rel_prefix);
        self.inner.list(Some(&prefix)).map(move |m| m.map(|m| self.rel(&m.location)).map_err(|e| self.err(rel_prefix, e)))
    }

    /// Deletes an object; a missing one is not an error.
    pub async fn delete(&self, rel: &str) -> Result<()> {
        match self.inner.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Streams an object of any size; it appears only when `finish` succeeds. Up to one
    /// part (8 MiB; `LABELGEN_PART_BYTES` in tests) it is sent as one PUT at `finish`, so a
    /// writer killed before then leaves nothing. Larger objects become a multipart upload;
    /// where the store has a multipart API (S3) its id is first written to
    /// `REL.upload` ([`UPLOAD_SUFFIX`]) and removed when the upload completes or is
    /// aborted, so an upload whose writer was killed can be aborted later
    /// ([`Store::abort_recorded_upload`], which finalize calls).
    pub async fn writer(&self, rel: &str) -> Result<StoreWriter> {
        self.writer_sized(rel, 0).await
    }

    /// [`Store::writer`] for an object of about `expected` bytes: parts grow past 8 MiB so
    /// that it takes at most 9,000 of them (S3 and MinIO complete at most 10,000 parts: 78
    /// GiB at 8 MiB). Parts stay of one size within an upload, as some stores require.
    pub async fn writer_sized(&self, rel: &str, expected: u64) -> Result<StoreWriter> {
        // Tests lower the part size to open uploads with little data; S3 completes only
        // uploads whose parts (but the last) have at least 5 MiB.
        let floor = std::env::var("LABELGEN_PART_BYTES").ok().and_then(|v| v.parse::<usize>().ok()).filter(|&n| n > 0).unwrap_or(PART_BYTES);
        let part_bytes = floor.max(usize::try_from(expected.div_ceil(MAX_PARTS_PLANNED).next_multiple_of(1 << 20)).unwrap_or(usize::MAX));
        if part_bytes < 5 << 20 {
            tracing::warn!(part_bytes, "LABELGEN_PART_BYTES is under S3's 5 MiB minimum part size: multipart uploads will not complete on S3");
        }
        Ok(StoreWriter { store: self.clone(), rel: rel.to_string(), buf: Vec::new(), part_bytes, upload: None, failed: false })
    }

    /// Removes an object; for an upload record ([`is_upload_record`]) the upload it
    /// names is aborted first ([`Store::abort_recorded_upload`]).
    pub async fn discard(&self, rel: &str) -> Result<()> {
        if is_upload_record(rel) {
            self.abort_recorded_upload(rel).await
        } else {
            self.delete(rel).await
        }
    }

    /// Whether large objects' multipart uploads are recorded (see [`Store::writer`]).
    pub fn records_uploads(&self) -> bool {
        self.multipart.is_some()
    }

    /// Aborts the multipart upload recorded in `marker` (an object named `….upload`) and
    /// removes the marker. An upload already completed or aborted is no error.
    pub async fn abort_recorded_upload(&self, marker: &str) -> Result<()> {
        let target = marker.strip_suffix(UPLOAD_SUFFIX).unwrap_or(marker);
        if let (Some(mp), Some(id)) = (&self.multipart, self.get(marker).await?) {
            let id = String::from_utf8_lossy(&id).trim().to_string();
            abort_upload(mp.as_ref(), &self.path(target), &id).await.map_err(|e| self.err(target, e))?;
        }
        self.delete(marker).await
    }

    /// Checks the store answers (bucket exists, credentials work) with one list call.
    pub async fn check_reachable(&self) -> Result<()> {
        let prefix = self.path("");
        let mut s = self.inner.list(Some(&prefix));
        match s.try_next().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let worker_fault = crate::error::storage_worker_fault(&e);
                Err(Error::StorageAt { path: self.display.clone(), message: format!("storage is not usable: {}", store_error_text(e)), worker_fault })
            }
        }
    }
}

impl Store {
    /// Checks that create-only writes are honoured (S3's `If-None-Match: *`): a scratch
    /// object is created twice, and the second must be refused. A server that ignores the
    /// header would let two attempts both "create" a shard's commit record, so the exactly-N
    /// guarantee would rest on nothing; such a store is refused with an error naming it.
    pub async fn check_create_only(&self) -> Result<()> {
        let probe = format!(".labelgen-create-check-{:016x}", rand::random::<u64>());
        // The first answers AlreadyExists only when its own write landed and the answer was
        // lost (the client's retry found it): that store honours create-only writes too.
        self.put_create(&probe, Bytes::from_static(b"1")).await?;
        let second = self.put_create(&probe, Bytes::from_static(b"2")).await;
        self.delete(&probe).await?;
        match second? {
            Created::AlreadyExists => Ok(()),
            Created::Created => Err(Error::StorageAt {
                path: self.describe(&probe),
                message: "the store does not honour create-only writes (a second PUT with If-None-Match: * succeeded); labelgen's commit records need them (AWS S3, MinIO since 2024, Ceph RGW 18+)".into(),
                worker_fault: false,
            }),
        }
    }
}

/// Aborts a multipart upload; one that is gone already (completed or aborted) is no error.
async fn abort_upload(mp: &dyn MultipartStore, path: &ObjPath, id: &str) -> object_store::Result<()> {
    match mp.abort_multipart(path, &id.to_string()).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        // S3 answers NoSuchUpload (404); the memory store "MultipartUpload not found".
        Err(e) if e.to_string().contains("NoSuchUpload") || e.to_string().to_lowercase().contains("not found") => Ok(()),
        Err(e) => Err(e),
    }
}

/// A blocking reader over the chunks an async stream sends; end of file when the sender
/// is gone.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    chunk: Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(c) => self.chunk = c,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// Where the id of `rel`'s open multipart upload is recorded (see [`Store::writer`]).
pub fn upload_record(rel: &str) -> String {
    format!("{rel}{UPLOAD_SUFFIX}")
}

/// Whether `rel` is such a record.
pub fn is_upload_record(rel: &str) -> bool {
    rel.ends_with(UPLOAD_SUFFIX)
}

/// Part size of multipart uploads (S3 allows 5 MiB to 5 GiB; all but the last part equal),
/// unless the object is expected to need more than [`MAX_PARTS_PLANNED`] of them.
pub const PART_BYTES: usize = 8 << 20;
/// Parts a [`Store::writer_sized`] upload is planned to fit in (S3's limit is 10,000; the
/// rest is margin for an estimate that falls short).
pub const MAX_PARTS_PLANNED: u64 = 9_000;
/// Suffix of the object that records an open multipart upload's id (see [`Store::writer`]).
pub const UPLOAD_SUFFIX: &str = ".upload";
/// Parts in flight at once per upload.
const PARTS_IN_FLIGHT: usize = 4;

/// A streaming upload started by [`Store::writer`].
pub struct StoreWriter {
    store: Store,
    rel: String,
    /// Bytes not yet sent (under one part).
    buf: Vec<u8>,
    part_bytes: usize,
    upload: Option<Upload>,
    /// Set by the first error: the upload may lack a part, so it can only be aborted.
    failed: bool,
}

enum Upload {
    /// The store's generic multipart upload (local files, wrapped stores).
    Generic(object_store::WriteMultipart),
    /// A multipart upload whose id is recorded in `REL.upload`.
    Recorded { mp: Arc<dyn MultipartStore>, path: ObjPath, id: String, parts: Vec<tokio::task::JoinHandle<object_store::Result<PartId>>>, done: Vec<PartId> },
}

impl StoreWriter {
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        self.check_usable()?;
        let r = self.write_inner(data).await;
        self.failed |= r.is_err();
        r
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            return Err(Error::StorageAt {
                path: self.store.describe(&self.rel),
                message: "an earlier write of this upload failed; it can only be aborted".into(),
                worker_fault: false,
            });
        }
        Ok(())
    }

    async fn write_inner(&mut self, data: &[u8]) -> Result<()> {
        if let Some(Upload::Generic(w)) = &mut self.upload {
            w.wait_for_capacity(PARTS_IN_FLIGHT).await.map_err(|e| self.store.err(&self.rel, e))?;
            w.write(data);
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        while self.buf.len() >= self.part_bytes {
            if self.upload.is_none() {
                self.start().await?;
                if let Some(Upload::Generic(w)) = &mut self.upload {
                    w.write(&std::mem::take(&mut self.buf));
                    return Ok(());
                }
            }
            let part: Vec<u8> = self.buf.drain(..self.part_bytes).collect();
            self.send(part).await?;
        }
        Ok(())
    }

    async fn start(&mut self) -> Result<()> {
        let store = &self.store;
        let path = store.path(&self.rel);
        self.upload = Some(match &store.multipart {
            Some(mp) => {
                let id = mp.create_multipart(&path).await.map_err(|e| store.err(&self.rel, e))?;
                let upload = Upload::Recorded { mp: mp.clone(), path: path.clone(), id: id.clone(), parts: Vec::new(), done: Vec::new() };
                // Recorded before any part is sent: whatever happens next, it can be aborted.
                if let Err(e) = store.put(&upload_record(&self.rel), Bytes::from(id.clone())).await {
                    // Unrecorded, it could never be found again: abort it now.
                    let _ = abort_upload(mp.as_ref(), &path, &id).await;
                    return Err(e);
                }
                upload
            }
            None => {
                let up = store.inner.put_multipart(&path).await.map_err(|e| store.err(&self.rel, e))?;
                Upload::Generic(object_store::WriteMultipart::new_with_chunk_size(up, self.part_bytes))
            }
        });
        Ok(())
    }

    /// Sends one part of a recorded upload, keeping at most [`PARTS_IN_FLIGHT`] in flight.
    async fn send(&mut self, part: Vec<u8>) -> Result<()> {
        let Some(Upload::Recorded { mp, path, id, parts, done }) = &mut self.upload else { return Ok(()) };
        if parts.len() >= PARTS_IN_FLIGHT {
            let first = parts.remove(0);
            done.push(join_part(first).await.map_err(|e| self.store.err(&self.rel, e))?);
        }
        let idx = done.len() + parts.len();
        let (mp, path, id) = (mp.clone(), path.clone(), id.clone());
        parts.push(tokio::spawn(async move { mp.put_part(&path, &id, idx, PutPayload::from(part)).await }));
        Ok(())
    }

    pub async fn finish(mut self) -> Result<()> {
        if let Err(e) = self.check_usable() {
            let _ = self.abort().await;
            return Err(e);
        }
        match self.upload.take() {
            None => self.store.put(&self.rel, Bytes::from(std::mem::take(&mut self.buf))).await,
            Some(Upload::Generic(w)) => w.finish().await.map(|_| ()).map_err(|e| self.store.err(&self.rel, e)),
            Some(up) => {
                self.upload = Some(up);
                if let Err(e) = self.complete().await {
                    // Best effort: no upload is left open behind a failed finish.
                    let _ = self.abort().await;
                    return Err(e);
                }
                // Completed: a record left behind is harmless (finalize drops it).
                if let Err(e) = self.store.delete(&upload_record(&self.rel)).await {
                    tracing::warn!(error = %e, "could not remove the record of a completed upload; finalize will");
                }
                Ok(())
            }
        }
    }

    /// Sends the rest, waits for every part and completes a recorded upload; the upload
    /// stays in `self.upload` until it completes, so a failure can abort it.
    async fn complete(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            self.send(rest).await?;
        }
        let Some(Upload::Recorded { mp, path, id, parts, done }) = &mut self.upload else { return Ok(()) };
        while !parts.is_empty() {
            let p = parts.remove(0);
            done.push(join_part(p).await.map_err(|e| self.store.err(&self.rel, e))?);
        }
        let (mp, path, id, done) = (mp.clone(), path.clone(), id.clone(), std::mem::take(done));
        mp.complete_multipart(&path, &id, done).await.map_err(|e| self.store.err(&self.rel, e))?;
        self.upload = None;
        Ok(())
    }

    /// Abandons the upload: the parts already sent are deleted and no object appears.
    pub async fn abort(mut self) -> Result<()> {
        match self.upload.take() {
            None => Ok(()),
            Some(Upload::Generic(w)) => w.abort().await.map_err(|e| self.store.err(&self.rel, e)),
            Some(Upload::Recorded { mp, path, id, parts, .. }) => {
                // Parts still in flight could land after the abort and keep the upload
                // alive: stop them and wait until they are gone.
                for p in parts {
                    p.abort();
                    let _ = p.await;
                }
                // The id in hand, not the record: that works even if reading it fails.
                abort_upload(mp.as_ref(), &path, &id).await.map_err(|e| self.store.err(&self.rel, e))?;
                self.store.delete(&upload_record(&self.rel)).await
            }
        }
    }
}

async fn join_part(h: tokio::task::JoinHandle<object_store::Result<PartId>>) -> object_store::Result<PartId> {
    h.await.unwrap_or_else(|e| Err(object_store::Error::Generic { store: "multipart", source: Box::new(e) }))
}

/// object_store's error text, shortened: the source chain without request internals.
fn store_error_text(e: object_store::Error) -> String {
    trim_error_body(&crate::logging::error_text(&e))
}

/// Cuts an S3 XML error body down to its code and message: request ids, host ids and
/// access key ids stay out of logs, dead-letter entries and `status` output.
fn trim_error_body(text: &str) -> String {
    let Some(start) = text.find("<?xml").or_else(|| text.find("<Error>")) else { return text.to_string() };
    let tag = |name: &str| -> Option<&str> {
        let open = format!("<{name}>");
        let from = text[start..].find(&open)? + start + open.len();
        let to = text[from..].find(&format!("</{name}>"))? + from;
        Some(&text[from..to])
    };
    let summary = match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => "(S3 error body omitted)".to_string(),
    };
    format!("{}{summary}", &text[..start])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `memory://` of one process is the same store (the embedded mode writes
    /// `run.json`, the shards and the manifest through separate opens).
    #[tokio::test]
    async fn memory_urls_of_one_process_share_their_objects() {
        let key = format!("shared-{}", rand::random::<u64>());
        let a = Store::open("memory://").unwrap().child(&key);
        a.put("x", Bytes::from_static(b"1")).await.unwrap();
        let b = Store::open("memory://").unwrap().child(&key);
        assert_eq!(b.get("x").await.unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(Store::memory().get(&format!("{key}/x")).await.unwrap(), None, "Store::memory is a fresh one");
        // Messages keep the scheme's two slashes.
        assert_eq!(Store::open("memory://").unwrap().describe("x"), "memory://x");
        assert_eq!(b.describe("x"), format!("memory://{key}/x"));
    }

    /// Parts stay 8 MiB until an object would need more than 9,000 of them: a 200 GB
    /// manifest (200 million samples planned at 1 KiB each) takes 22 MiB parts, 8,878 of them.
    #[tokio::test]
    async fn parts_grow_only_for_objects_past_the_part_limit() {
        let s = Store::memory();
        assert_eq!(s.writer("a").await.unwrap().part_bytes, PART_BYTES);
        assert_eq!(s.writer_sized("a", 9_000 * PART_BYTES as u64).await.unwrap().part_bytes, PART_BYTES);
        let big = s.writer_sized("a", 200_000_000 * 1024).await.unwrap().part_bytes;
        assert_eq!(big, 22 << 20);
        assert!((200_000_000u64 * 1024).div_ceil(big as u64) <= MAX_PARTS_PLANNED);
    }

    #[test]
    fn s3_error_bodies_keep_code_and_message_only() {
        let raw = "Client error with status 403 Forbidden: <?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message><AWSAccessKeyId>AKIAEXAMPLEKEY123</AWSAccessKeyId><RequestId>4442587FB7D0A2F9</RequestId><HostId>abc=</HostId></Error>";
        let t = trim_error_body(raw);
        assert_eq!(t, "Client error with status 403 Forbidden: InvalidAccessKeyId: The AWS Access Key Id you provided does not exist in our records.");
        assert!(!t.contains("AKIA") && !t.contains("RequestId"));
        assert_eq!(trim_error_body("plain text"), "plain text");
    }

    #[test]
    fn urls_parse_or_say_what_was_expected() {
        assert_eq!(StoreUrl::parse("s3://b/p/q/").unwrap(), StoreUrl::S3 { bucket: "b".into(), prefix: "p/q".into() });
        assert_eq!(StoreUrl::parse("file:///x/y").unwrap(), StoreUrl::Local { dir: "/x/y".into() });
        assert_eq!(StoreUrl::parse("out/a").unwrap(), StoreUrl::Local { dir: "out/a".into() });
        assert!(StoreUrl::parse("file://rel").unwrap_err().contains("absolute"));
        assert!(StoreUrl::parse("s3:///x").unwrap_err().contains("no bucket"));
        assert!(StoreUrl::parse("gs://x").unwrap_err().contains("gs://x"));
        for typo in ["s3:/b/p", "s3:b", "file:/x"] {
            let e = StoreUrl::parse(typo).unwrap_err();
            assert!(e.contains(typo) && e.contains("two slashes"), "{e}");
        }
        // A prefix that object_store would store under another (percent-encoded) name.
        for (url, what) in [("s3://b/team~x/runs", "'~'"), ("s3://b/a//runs", "empty"), ("s3://b/a/../runs", "\"..\""), ("s3://b/a b#1", "'#'")] {
            let e = StoreUrl::parse(url).unwrap_err();
            assert!(e.contains(url) && e.contains(what), "{url}: {e}");
        }
        assert_eq!(StoreUrl::parse("s3://b/team-x_1.2/runs").unwrap(), StoreUrl::S3 { bucket: "b".into(), prefix: "team-x_1.2/runs".into() });
        // Local directories not yet made are key segments too; existing ones are not.
        let dir = std::env::temp_dir().join(format!("labelgen-url-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("has~tilde")).unwrap();
        assert!(Store::open(dir.join("has~tilde/new").to_str().unwrap()).is_ok());
        let e = Store::open(dir.join("new~x/more").to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("storage location") && e.contains("new~x") && e.contains("'~'"), "{e}");
        let e = StoreUrl::parse("s3://b/데이터/runs").unwrap_err();
        assert!(e.contains("데이터") && e.contains("ASCII"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
