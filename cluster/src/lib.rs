//! arrow-cluster
