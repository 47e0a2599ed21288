//! Integration test harness: starts real arrow processes and origins.
