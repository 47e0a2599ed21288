//! Every config shipped in examples/ parses and validates.

#[test]
fn every_example_config_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            arrow_server::config::Config::load(&p)
                .unwrap_or_else(|err| panic!("{}: {err}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 3, "examples found: {n}");
}
