//! SPADE image generator (being written).
