//! Names: a node's canonical name (reverse lookup of its address) and the cluster key of a
//! title (domain + md5 hex of the hash input).

use std::ffi::CStr;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use md5::{Digest, Md5};

use crate::ClusterError;

/// Longest node name (a DNS name in presentation form without the final dot).
pub const NODE_NAME_MAX_BYTES: usize = 253;

/// The cluster key: `domain` followed by the lowercase md5 hex of `hash_input`.
/// All objects of one title share it, so a manifest and its chunks live on one node.
pub fn cluster_key(domain: &str, hash_input: &str) -> String {
    let digest = Md5::digest(hash_input.as_bytes());
    let mut key = String::with_capacity(domain.len() + 32);
    key.push_str(domain);
    key.push_str(&hex::encode(digest));
    key
}

/// A node's name as its config gives it: `node.name` when set, else the cluster section's
/// identity (`cluster.node_name`, or the reverse lookup of `cluster.advertise_addr`), else the
/// host name. The node and the C library (`lib/`) both call this, so they agree on "self".
pub fn node_name(
    configured: Option<&str>,
    cluster: Option<&crate::ClusterConfig>,
) -> Result<String, String> {
    if let Some(n) = configured {
        return Ok(n.to_string());
    }
    if let Some(c) = cluster {
        return c.node_identity().map_err(|e| e.to_string());
    }
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc != 0 {
        return Err("node.name is not set and the host name is unknown".into());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// This node's canonical name: the reverse lookup (getnameinfo: PTR record or /etc/hosts, per
/// nsswitch) of `addr`, or when `addr` is `None`, of the source address of this host's default
/// route (IPv4, then IPv6). The name is lowercased, without the final dot.
pub fn resolve_node_name(addr: Option<IpAddr>) -> Result<String, ClusterError> {
    let addr = match addr {
        Some(addr) => addr,
        None => default_route_addr()?,
    };
    let name = reverse_lookup(addr)?;
    let name = canonical(&name);
    check_node_name(&name)?;
    Ok(name)
}

/// Lowercase, no final dot.
pub(crate) fn canonical(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A node name must be a usable DNS name: it is answered as a CNAME target.
pub(crate) fn check_node_name(name: &str) -> Result<(), ClusterError> {
    let bad = |reason| {
        Err(ClusterError::BadNodeName {
            name: name.to_owned(),
            reason,
        })
    };
    let trimmed = name.trim_end_matches('.');
    if trimmed.is_empty() {
        return bad("empty");
    }
    if trimmed.len() > NODE_NAME_MAX_BYTES {
        return bad("longer than 253 bytes");
    }
    for label in trimmed.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("a label is empty or longer than 63 bytes");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad("only letters, digits, '-', '_' and '.' are allowed");
        }
    }
    if trimmed.parse::<IpAddr>().is_ok() {
        return bad("an address is not a name (reverse lookup found no name)");
    }
    Ok(())
}

/// The source address the kernel picks toward a documentation address (no packet is sent:
/// connecting a UDP socket only selects a route).
fn default_route_addr() -> Result<IpAddr, ClusterError> {
    let probes: [(&str, &str); 2] = [("0.0.0.0:0", "192.0.2.1:9"), ("[::]:0", "[2001:db8::1]:9")];
    let mut reasons = Vec::new();
    for (bind, target) in probes {
        let attempt = UdpSocket::bind(bind).and_then(|s| {
            s.connect(target)?;
            s.local_addr()
        });
        match attempt {
            Ok(local) if !local.ip().is_unspecified() => return Ok(local.ip()),
            Ok(_) => reasons.push(format!("no route toward {target}")),
            Err(e) => reasons.push(format!("route toward {target}: {e}")),
        }
    }
    Err(ClusterError::NoAddress {
        reason: reasons.join("; "),
    })
}

fn reverse_lookup(addr: IpAddr) -> Result<String, ClusterError> {
    let sock = socket2::SockAddr::from(SocketAddr::new(addr, 0));
    let mut host = [0 as libc::c_char; libc::NI_MAXHOST as usize];
    // SAFETY: `sock` owns a valid sockaddr of `sock.len()` bytes; `host` is a writable buffer
    // whose length is passed; the service buffer is null with length 0, which getnameinfo
    // accepts; NI_NAMEREQD makes it fail rather than return the numeric form.
    let rc = unsafe {
        libc::getnameinfo(
            sock.as_ptr(),
            sock.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        // SAFETY: gai_strerror returns a pointer to a static NUL-terminated string.
        let reason = unsafe { CStr::from_ptr(libc::gai_strerror(rc)) }
            .to_string_lossy()
            .into_owned();
        return Err(ClusterError::Unresolvable { addr, reason });
    }
    // SAFETY: on success getnameinfo wrote a NUL-terminated string into `host`.
    let name = unsafe { CStr::from_ptr(host.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_key_matches_the_seed_poc() {
        assert_eq!(
            cluster_key("claw.ac", "/assets3/matrix"),
            "claw.acaa22fad1ed4a441d54fa664f53d5b0ee"
        );
    }

    #[test]
    fn loopback_resolves_through_etc_hosts() {
        // /etc/hosts of every Linux host names 127.0.0.1 (usually `localhost`).
        let name = resolve_node_name(Some("127.0.0.1".parse().unwrap())).unwrap();
        assert!(!name.is_empty());
        assert_eq!(name, name.to_ascii_lowercase());
    }

    #[test]
    fn unresolvable_address_is_a_clear_error() {
        // TEST-NET-3 has no PTR records and is in no /etc/hosts.
        let err = resolve_node_name(Some("203.0.113.254".parse().unwrap())).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("203.0.113.254"), "{text}");
        assert!(text.contains("node_name"), "{text}");
    }

    #[test]
    fn node_names_are_checked() {
        assert!(check_node_name("n01.lax.hw.bar.net").is_ok());
        assert!(check_node_name("n01.lax.hw.bar.net.").is_ok());
        assert!(check_node_name("").is_err());
        assert!(check_node_name("a..b").is_err());
        assert!(check_node_name("bad name").is_err());
        assert!(check_node_name("10.0.0.1").is_err());
        assert!(check_node_name(&"a".repeat(64)).is_err());
        assert_eq!(canonical("N01.Lax.Net."), "n01.lax.net");
    }
}
