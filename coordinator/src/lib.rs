//! labelgen coordinator library.
