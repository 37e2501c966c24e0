//! Every Redis key name the queue uses, built in one place.
//!
//! Global index keys (`labelgen:runs`, `labelgen:active`) hold run ids only. Everything
//! about one run lives under `labelgen:{RUN}:…`; the `{RUN}` hash tag puts all of a run's
//! keys in one Redis Cluster slot, so a script touches the keys of exactly one run and
//! never a global key (the indexes are updated by plain commands next to the scripts).

/// Global keys.
pub(crate) const RUNS: &str = "labelgen:runs";
pub(crate) const ACTIVE: &str = "labelgen:active";

/// `labelgen:runs`: ZSET, member = run id, score = created_ms. Every known run.
pub(crate) fn runs() -> &'static str {
    RUNS
}

/// `labelgen:active`: ZSET of runs that may be claimed from. Score = -priority, member =
/// [`active_member`], so `ZRANGE 0 -1` lists highest priority first, then oldest, then by id.
pub(crate) fn active() -> &'static str {
    ACTIVE
}

/// Member of `labelgen:active` for a run: `<created_ms, 16 digits>:<run id>`.
pub(crate) fn active_member(created_ms: u64, run_id: &str) -> String {
    format!("{created_ms:016}:{run_id}")
}

/// The run id inside an [`active_member`].
pub(crate) fn run_of_active_member(member: &str) -> Option<&str> {
    member.split_once(':').map(|(_, run)| run)
}

/// Score of a run in `labelgen:active`.
pub(crate) fn active_score(priority: i32) -> f64 {
    -f64::from(priority)
}

/// The keys of one run.
#[derive(Debug, Clone)]
pub(crate) struct RunKeys {
    prefix: String,
}

impl RunKeys {
    pub(crate) fn new(run_id: &str) -> RunKeys {
        RunKeys { prefix: format!("labelgen:{{{run_id}}}:") }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    /// HASH: the run record's fields plus `state`, `cursor` (shards at or past it were
    /// never claimed), `committed` (a count) and `last_committed`.
    pub(crate) fn meta(&self) -> String {
        self.key("meta")
    }
    /// LIST of shards given back, retried or revived: claimed before the cursor.
    pub(crate) fn ready(&self) -> String {
        self.key("ready")
    }
    /// ZSET shard → time (ms) when a failed job may be claimed again.
    pub(crate) fn delayed(&self) -> String {
        self.key("delayed")
    }
    /// ZSET shard → lease deadline (ms).
    pub(crate) fn leased(&self) -> String {
        self.key("leased")
    }
    /// HASH shard → owner of the current lease (leased shards only).
    pub(crate) fn owners(&self) -> String {
        self.key("owners")
    }
    /// HASH shard → number of claims so far (= token of the latest lease); only shards
    /// claimed at least once and not yet committed.
    pub(crate) fn claims(&self) -> String {
        self.key("claims")
    }
    /// HASH shard → failed attempts so far (only shards with ≥ 1 failure, not dead).
    pub(crate) fn failures(&self) -> String {
        self.key("failures")
    }
    /// Bitmap: bit `shard` set once the shard is committed (while the run is active;
    /// cancel and finalize drop it).
    pub(crate) fn committed(&self) -> String {
        self.key("committed")
    }
    /// HASH shard → `<failures>:<last error>` for dead jobs.
    pub(crate) fn dead(&self) -> String {
        self.key("dead")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_keys_share_a_hash_tag() {
        let k = RunKeys::new("r1");
        assert_eq!(k.meta(), "labelgen:{r1}:meta");
        assert_eq!(k.ready(), "labelgen:{r1}:ready");
        assert!(k.dead().starts_with("labelgen:{r1}:"));
    }

    #[test]
    fn active_members_sort_by_age_and_parse_back() {
        let a = active_member(5, "zz");
        let b = active_member(1_700_000_000_000, "aa");
        assert!(a < b);
        assert_eq!(run_of_active_member(&b), Some("aa"));
        assert_eq!(run_of_active_member(&active_member(1, "a:b")), Some("a:b"));
    }
}
