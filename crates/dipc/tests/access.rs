//! Who can reach a daemon: `--bind` restricts the listening address.

mod common;

use std::os::unix::fs::PermissionsExt;

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
    let port = free_port();
    let args = dipc_args(
        ["1", "1", "1"],
        &port.to_string(),
        dir.path(),
        &["--bind", "192.0.2.1"],
    );
    let out = dipc_expect_refusal(&args, dir.path(), Some(port));
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

/// Runs `program args` as the user nobody (setpriv), or None when this test
/// is not run as root and cannot switch users.
fn as_nobody(program: &str, args: &[&str]) -> Option<std::process::Output> {
    if !nix::unistd::getuid().is_root() {
        eprintln!("not root: cannot run a command as another user");
        return None;
    }
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            program,
        ])
        .args(args)
        .output()
        .expect("run setpriv (util-linux)");
    Some(out)
}

#[test]
fn another_user_can_neither_read_the_segment_nor_stop_the_daemon() {
    let d = Daemon::start(1, 1, 1, &["--keys", "0"]);
    d.client().write_mailbox(1, "secret");
    assert_eq!(file_mode(&d.shm()), Some(0o600), "{}", d.shm().display());
    let shm = d.shm().display().to_string();
    let Some(read) = as_nobody("cat", &[&shm]) else {
        d.stop();
        return;
    };
    let stderr = String::from_utf8_lossy(&read.stderr);
    assert!(
        !read.status.success() && stderr.contains("Permission denied"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&read.stdout).contains("secret"));
    // A copy nobody can reach (the checkout may be under a private home).
    let public = temp_dir();
    let dipcrm = public.path().join("dipcrm");
    std::fs::copy(dipcrm_bin(), &dipcrm).expect("copy dipcrm");
    for (path, mode) in [(public.path(), 0o755), (dipcrm.as_path(), 0o755)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let stop = as_nobody(&dipcrm.display().to_string(), &[&d.port.to_string()]).expect("root");
    let stderr = String::from_utf8_lossy(&stop.stderr);
    assert_eq!(stop.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no permission"), "{stderr}");
    assert!(
        d.supervisor.is_alive(),
        "nobody's dipcrm signalled the daemon"
    );
    assert!(d
        .client()
        .request("stat 1")
        .starts_with("OK mailbox 1: 6 bytes"));
    d.stop();
}

#[test]
fn with_an_auth_file_nothing_is_served_before_the_secret() {
    let secrets = temp_dir();
    let file = secrets.path().join("secret");
    std::fs::write(&file, "open sesame\n").expect("write the secret");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let path = file.display().to_string();
    for model in ["event", "prefork"] {
        let d = Daemon::start(
            1,
            1,
            1,
            &["--model", model, "--keys", "4", "--auth-file", &path],
        );
        let mut c = d.client();
        let refused = "ERR authentication required: send auth <secret> first";
        for request in ["r 1", "w 1 sneaky", "put 1 sneaky", "stat", "auth"] {
            let reply = c.request(request);
            if request == "auth" {
                assert_eq!(reply, "ERR wrong secret; closing the connection", "{model}");
            } else {
                assert_eq!(reply, refused, "{model}: {request}");
            }
        }
        assert!(
            c.read_to_eof().is_empty(),
            "{model}: closed after a wrong secret"
        );
        let mut c = d.client();
        assert_eq!(c.request("auth open sesame"), "OK", "{model}");
        assert_eq!(
            c.read_mailbox(1),
            (0, Vec::new()),
            "{model}: nothing got in"
        );
        assert!(
            c.request("stat").contains(" puts=0 "),
            "{model}: the refused put never ran"
        );
        assert_eq!(c.request("get 1"), "ERR no such key", "{model}");
        let mut leaving = d.client();
        leaving.send_line("q");
        assert_eq!(leaving.read_to_eof(), b"Goodbye", "{model}");
        drop((c, leaving));
        d.stop();
    }
}

#[test]
fn an_auth_file_others_may_read_is_refused() {
    let dir = temp_dir();
    let file = dir.path().join("secret");
    std::fs::write(&file, "open sesame\n").expect("write the secret");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let port = free_port();
    let path = file.display().to_string();
    let args = dipc_args(
        ["1", "1", "1"],
        &port.to_string(),
        dir.path(),
        &["--auth-file", &path],
    );
    let out = dipc_expect_refusal(&args, dir.path(), Some(port));
    assert_eq!(out.code(), Some(2), "{}", out.describe());
    assert!(out.stderr.contains("chmod 600"), "{}", out.describe());
}

/// A process of its own, killed when dropped.
struct Victim(std::process::Child);

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A killed daemon's segment, its header rewritten to name `pid`.
fn segment_naming(d: &Daemon, pid: u32) {
    d.sigkill_everything();
    let segment = shmlib::Segment::open(d.port).expect("the dead daemon's segment");
    segment.set_supervisor_pid(pid as i32);
}

#[test]
fn dipcrm_signals_no_process_a_forged_header_names() {
    // A process of this user that is no dipc daemon: the pid was recycled.
    let mut d = Daemon::start(1, 1, 1, &["--keys", "0"]);
    let victim = Victim(
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep"),
    );
    segment_naming(&d, victim.0.id());
    let out = d.dipcrm();
    assert!(out.status.success(), "{}", out.describe());
    assert!(
        out.stdout.contains("not signalling it"),
        "{}",
        out.describe()
    );
    assert!(!d.shm().exists(), "the leftovers are removed");
    assert!(
        ProcId::of(victim.0.id() as i32).is_some_and(|p| p.is_alive()),
        "dipcrm signalled an unrelated process"
    );
    drop(victim);

    // Another user's process: refused, nothing signalled, nothing removed.
    if !nix::unistd::getuid().is_root() {
        eprintln!("not root: cannot start another user's process");
        return;
    }
    let mut d = Daemon::start(1, 1, 1, &["--keys", "0"]);
    let victim = Victim(
        std::process::Command::new("setpriv")
            .args([
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "sleep",
                "30",
            ])
            .spawn()
            .expect("setpriv"),
    );
    let owned_by_nobody = || {
        std::fs::metadata(format!("/proc/{}", victim.0.id()))
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) != 0)
            .unwrap_or(false)
    };
    assert!(wait_until(
        std::time::Duration::from_secs(5),
        owned_by_nobody
    ));
    segment_naming(&d, victim.0.id());
    let out = d.dipcrm();
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("refusing to touch"),
        "{}",
        out.describe()
    );
    assert!(
        d.shm().exists(),
        "another user's daemon's segment was removed"
    );
    assert!(
        ProcId::of(victim.0.id() as i32).is_some_and(|p| p.is_alive()),
        "dipcrm signalled another user's process"
    );
    drop(victim);
    // The guard's sweep removes the segment left to "another user".
}
