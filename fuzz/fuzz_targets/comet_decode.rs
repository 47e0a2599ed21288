//! Comet decoding never panics, and whatever decodes re-encodes to the same bytes and decodes
//! to the same comet (decode → encode → decode).
#![no_main]

use arrow_cluster::{Comet, CometKey};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"arrow fuzz cluster secret";

fuzz_target!(|data: &[u8]| {
    let key = CometKey::new(SECRET);
    // The input as a datagram: almost always rejected, by length, magic or tag.
    check(data, &key);
    // The input as a body signed with the cluster secret: reaches the field parser.
    let mut signed = data.to_vec();
    signed.extend_from_slice(&key.tag(data));
    check(&signed, &key);
});

fn check(bytes: &[u8], key: &CometKey) {
    if let Ok(comet) = Comet::decode(bytes, key) {
        let encoded = comet.encode(key).expect("a decoded comet encodes");
        assert_eq!(encoded, bytes, "the encoding is canonical");
        let again = Comet::decode(&encoded, key).expect("a re-encoded comet decodes");
        assert_eq!(again, comet);
    }
}
