//! CPU-affine connection steering: a classic BPF program attached to a SO_REUSEPORT group that
//! returns the index of the shard pinned to the CPU handling the incoming packet (the core whose
//! NIC queue received it), or `cpu % shards` when no shard is pinned there.

use std::io;
use std::os::fd::AsRawFd;

// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
const BPF_LD: u16 = 0x00;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_ALU: u16 = 0x04;
const BPF_MOD: u16 = 0x90;
const BPF_JMP: u16 = 0x05;
const BPF_JEQ: u16 = 0x10;
const BPF_K: u16 = 0x00;
const BPF_RET: u16 = 0x06;
const BPF_A: u16 = 0x10;
/// SKF_AD_OFF + SKF_AD_CPU: the ancillary "current CPU" load.
const SKF_AD_CPU_OFFSET: u32 = (-0x1000i32 + 36) as u32;
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// The program for shards pinned to `cores` (shard i on cores[i]).
pub fn program(cores: &[usize]) -> Vec<libc::sock_filter> {
    let mut p = vec![stmt(BPF_LD | BPF_W | BPF_ABS, SKF_AD_CPU_OFFSET)];
    for (i, &c) in cores.iter().enumerate() {
        p.push(libc::sock_filter {
            code: BPF_JMP | BPF_JEQ | BPF_K,
            jt: 0,
            jf: 1,
            k: c as u32,
        });
        p.push(stmt(BPF_RET | BPF_K, i as u32));
    }
    p.push(stmt(BPF_ALU | BPF_MOD | BPF_K, cores.len() as u32));
    p.push(stmt(BPF_RET | BPF_A, 0));
    p
}

pub fn attach_cpu_steering(sock: &impl AsRawFd, cores: &[usize]) -> io::Result<()> {
    assert!(
        !cores.is_empty() && cores.len() < 100,
        "shard count bounded"
    );
    let mut prog = program(cores);
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel copies the program.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            &fprog as *const libc::sock_fprog as *const libc::c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_shape() {
        let p = program(&[2, 5]);
        assert_eq!(p.len(), 1 + 2 * 2 + 2);
        assert_eq!(p[1].k, 2);
        assert_eq!(p[2].k, 0);
        assert_eq!(p[3].k, 5);
        assert_eq!(p[4].k, 1);
        assert_eq!(p[5].k, 2); // mod shards
    }

    #[test]
    fn kernel_accepts_program() {
        let cores = [0usize, 1];
        let mut socks = Vec::new();
        let mut addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        for _ in cores {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.set_reuse_port(true).unwrap();
            s.bind(&addr.into()).unwrap();
            s.listen(16).unwrap();
            addr = s.local_addr().unwrap().as_socket().unwrap();
            socks.push(s);
        }
        attach_cpu_steering(&socks[0], &cores).unwrap();
    }
}
