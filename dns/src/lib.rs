//! arrow-dns
