//! Who can reach a daemon: `--bind` restricts the listening address.

mod common;

use common::*;

/// The local addresses (as /proc/net/tcp writes them, `0100007F:C350`)
/// that listen on `port`.
fn listening_addresses(port: u16) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state) = (fields.get(1)?, fields.get(3)?);
            let (addr, hex_port) = local.split_once(':')?;
            (*state == "0A" && u16::from_str_radix(hex_port, 16).ok()? == port)
                .then(|| addr.to_string())
        })
        .collect()
}

#[test]
fn bind_restricts_the_listening_address() {
    let d = Daemon::start(1, 1, 1, &["--bind", "127.0.0.1", "--keys", "0"]);
    assert_eq!(listening_addresses(d.port), ["0100007F"], "127.0.0.1 only");
    assert!(d.client().request("stat 1").starts_with("OK mailbox 1"));
    d.stop();
    let d = Daemon::start(1, 1, 1, &["--keys", "0"]);
    assert_eq!(listening_addresses(d.port), ["00000000"], "every interface");
    d.stop();
}

#[test]
fn a_bind_address_this_host_lacks_is_refused_plainly() {
    let dir = temp_dir();
    let port = free_port().to_string();
    let args = dipc_args(["1", "1", "1"], &port, dir.path(), &["--bind", "192.0.2.1"]);
    let out = run(&dipc_bin(), &args, dir.path());
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("cannot listen on 192.0.2.1 port")
            && out
                .stderr
                .contains("no interface of this host has 192.0.2.1"),
        "{}",
        out.describe()
    );
}
