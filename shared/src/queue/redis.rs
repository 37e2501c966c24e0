//! Redis queue (being written).
pub struct RedisQueue;
