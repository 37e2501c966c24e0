//! Integration tests, one module per topic (one test binary keeps link time down). They
//! start real servers (redis-server, moto's S3 server) on free loopback ports and run the
//! real binaries; `.ci/run` installs both servers.

mod chaos;
mod cluster;
mod configs;
mod embedded;
mod faults;
mod models;
mod queue;
mod readers;
mod static_shards;
mod storage;
