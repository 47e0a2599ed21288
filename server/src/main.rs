//! `arrow`: run a node, check a config, run the demo, print the cluster table.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use arrow_server::config::Config;
use clap::{Parser, Subcommand};

/// mimalloc: per-thread free lists suit a thread-per-core server (glibc malloc took ~9 % of a
/// shard's CPU on 1 KiB hits, with arena consolidation).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "arrow",
    version,
    about = "Arrow: a storage-centric CDN cache node for media"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node on a config file until SIGTERM/SIGINT.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Parse and validate a config file; errors name the key and the line.
    CheckConfig { file: PathBuf },
    /// A single node on a temporary slab file, with a built-in demo origin unless --origin.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Origin base URL (http://host:port); default: start the built-in demo origin.
        #[arg(long)]
        origin: Option<String>,
        /// Admin listener (metrics, purge; token "demo-admin-token").
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: SocketAddr,
        /// Also answer DNS for the demo zone dx.demo.test on this address.
        #[arg(long)]
        dns_listen: Option<SocketAddr>,
        /// Size of the temporary slab file.
        #[arg(long, default_value_t = 256 << 20)]
        disk_bytes: u64,
        /// Also serve HTTPS on this address (default 127.0.0.1:8443), with a self-signed ECDSA
        /// certificate made for the demo (for localhost, 127.0.0.1 and *.demo.test).
        #[arg(long, num_args = 0..=1, default_missing_value = "127.0.0.1:8443")]
        tls: Option<SocketAddr>,
    },
    /// Make a node's Ed25519 key pair for per-node comet signatures: the secret key goes to
    /// FILE (mode 0600, for cluster.signing_key_file), the public key is printed (for every
    /// node's cluster.node_keys).
    Keygen {
        /// Where to write the secret key; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the cluster table (from the node's shared memory) as a person reads it.
    Status {
        /// The node's config (its cluster.table_path is read).
        #[arg(long, conflicts_with = "table")]
        config: Option<PathBuf>,
        /// A table file under /dev/shm.
        #[arg(long)]
        table: Option<PathBuf>,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ARROW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let r = match cli.cmd {
        Cmd::Run { config } => Config::load(&config)
            .map_err(|e| e.to_string())
            .and_then(|cfg| arrow_server::node::run(cfg, |_| {})),
        Cmd::CheckConfig { file } => match Config::load(&file) {
            Ok(c) => {
                println!(
                    "{}: ok ({} shard(s), {} disk(s){}, {} host rule(s){}{}{})",
                    file.display(),
                    c.node.cores.len(),
                    c.disks.len(),
                    if c.disks.is_empty() {
                        " — nothing is cached: every request goes to the origin"
                    } else {
                        ""
                    },
                    c.hosts.len(),
                    if c.cluster.is_some() { ", cluster" } else { "" },
                    if c.dns.is_some() { ", dns" } else { "" },
                    if c.tls.is_some() {
                        ", tls: certificates and keys load"
                    } else {
                        ""
                    }
                );
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
        Cmd::Demo {
            listen,
            origin,
            admin_listen,
            dns_listen,
            disk_bytes,
            tls,
        } => demo(listen, origin, admin_listen, dns_listen, disk_bytes, tls),
        Cmd::Status { config, table } => status(config, table),
        Cmd::Keygen { out } => keygen(&out),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arrow: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(out: &std::path::Path) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    let key =
        arrow_cluster::signing_key_from_hex(&hex::encode(secret)).ok_or("key generation failed")?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    writeln!(f, "{}", hex::encode(secret)).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("{}", hex::encode(key.verifying_key().to_bytes()));
    Ok(())
}

fn demo(
    listen: SocketAddr,
    origin: Option<String>,
    admin_listen: SocketAddr,
    dns_listen: Option<SocketAddr>,
    disk_bytes: u64,
    tls: Option<SocketAddr>,
) -> Result<(), String> {
    let origin = match origin {
        Some(o) => o,
        None => {
            let a = arrow_server::demo::start_origin("127.0.0.1:0".parse().expect("addr"))
                .map_err(|e| format!("demo origin: {e}"))?;
            format!("http://{a}")
        }
    };
    // O_DIRECT needs a real file system: /var/tmp, not a tmpfs /tmp.
    let dir = PathBuf::from("/var/tmp").join(format!("arrow-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tls_section = match tls {
        Some(addr) => {
            let (cert, key) = arrow_server::tls::self_signed(&[
                "localhost",
                "127.0.0.1",
                "demo.arrow.test",
                "*.demo.test",
            ])?;
            let (cp, kp) = (dir.join("demo-cert.pem"), dir.join("demo-key.pem"));
            std::fs::write(&cp, cert).map_err(|e| format!("{}: {e}", cp.display()))?;
            std::fs::write(&kp, key).map_err(|e| format!("{}: {e}", kp.display()))?;
            format!(
                "[tls]\nlisten = [\"{addr}\"]\ncertificate = \"{}\"\nkey = \"{}\"\n",
                cp.display(),
                kp.display()
            )
        }
        None => String::new(),
    };
    let text = format!(
        r#"
{tls_section}
[node]
name = "demo.arrow.test"
cores = [0]
listen = ["{listen}"]
admin_listen = "{admin_listen}"
admin_token = "demo-admin-token"
debug_headers = true

[storage]
ram_tier_bytes = 33554432

[[disk]]
path = "{slab}"
size_bytes = {disk_bytes}

[[host]]
hosts = ["*"]
technical_labels = 1
origins = ["{origin}"]
default_ttl_s = 60
"#,
        slab = dir.join("demo-0.slab").display()
    );
    let mut cfg = Config::parse(&text, "demo").map_err(|e| e.to_string())?;
    if let Some(d) = dns_listen {
        cfg.dns = Some(arrow_dns::DnsConfig {
            listen: vec![d],
            zones: vec![arrow_dns::demo_zone()],
            core: None,
            tcp_connections_max: 256,
            tcp_connections_per_source_max: 16,
            tcp_idle_ms: 10_000,
            tcp_message_ms: 500,
        });
    }
    let r = arrow_server::node::run(cfg, |s| {
        println!("arrow demo: node demo.arrow.test");
        println!("  HTTP   http://{}/  (origin {origin})", s.listen[0]);
        if let Some(a) = s.admin {
            println!("  admin  http://{a}/metrics  (token: demo-admin-token)");
        }
        if let Some(d) = dns_listen {
            println!("  DNS    {d} zone dx.demo.test");
        }
        println!("  try:   curl -sD- -o /dev/null http://{}/video/title1/seg-1.ts  (twice: MISS, then HIT)", s.listen[0]);
        if let Some(t) = s.tls_listen.first() {
            println!("  HTTPS  https://{t}/  (self-signed: curl -k)");
            println!("  try:   curl -skD- -o /dev/null https://{t}/video/title1/seg-2.ts  (twice: MISS, then HIT)");
        }
        println!("  stop:  Ctrl-C (the slab in {} is removed)", dir.display());
    });
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn status(config: Option<PathBuf>, table: Option<PathBuf>) -> Result<(), String> {
    let path = match (config, table) {
        (_, Some(t)) => t,
        (Some(c), None) => {
            let cfg = Config::load(&c).map_err(|e| e.to_string())?;
            let cluster = cfg
                .cluster
                .as_ref()
                .ok_or_else(|| format!("{}: no [cluster] section", c.display()))?;
            let name = arrow_server::node::node_name(&cfg)?;
            cluster.table_path_for(&name)
        }
        (None, None) => return Err("give --config FILE or --table PATH".into()),
    };
    let table = arrow_cluster::Table::open_readonly(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    print!(
        "{}",
        arrow_cluster::format_status(&table.snapshot(), arrow_cluster::monotonic_ms())
    );
    Ok(())
}
