//! Procedural land-cover data (being written).
