//! In-memory queue (being written).
pub trait Clock {}
pub struct ManualClock;
pub struct MemoryQueue;
pub struct SystemClock;
