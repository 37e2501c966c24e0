//! DDPM label-map generator (being written).
