use arrow_dns::*;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
struct D;
impl Directory for D {
    fn designated(&self, _k: &str) -> Option<Answer> { Some(Answer::Node("n02.dx.demo.test".into())) }
    fn by_headroom(&self) -> Option<Answer> { Some(Answer::Node("n01.dx.demo.test".into())) }
}
#[test]
fn perf() {
    let mut z = demo_zone();
    z.nodes.insert("n02.dx.demo.test".into(), vec!["10.0.0.2".parse().unwrap()]);
    let zones = Zones::new(&[z]).unwrap();
    let mut m = Message::new();
    m.add_query(Query::query(Name::from_ascii("aa22fad1ed4a441d54fa664f53d5b0ee.dx.demo.test.").unwrap(), RecordType::A));
    let q = m.to_vec().unwrap();
    let t = std::time::Instant::now();
    let n = 1_000_000;
    let mut total = 0;
    for _ in 0..n { total += handle(&zones, &D, &q, Transport::UDP).unwrap().len(); }
    eprintln!("ns/query {}", t.elapsed().as_nanos() / n as u128);
    assert!(total > 0);
}
