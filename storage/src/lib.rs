//! arrow-storage
