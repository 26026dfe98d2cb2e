//! Shared helpers for Tack's benchmarks.
