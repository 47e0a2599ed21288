//! arrow-server
