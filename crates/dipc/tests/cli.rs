//! dipc's command line: every bad input gives one `dipc: error:` line on
//! stderr, a non-zero exit, and leaves nothing behind.

mod common;

use common::*;

/// Runs `dipc <m> <kib> <port> <packet> <extra>` (with --log and --pid-file
/// in a temp dir) and checks the refusal: one-line error, non-zero exit, no
/// segment for the port, no pid file, no process.
fn refused(geometry_and_port: [&str; 4], extra: &[&str]) {
    let [m, kib, port, packet] = geometry_and_port;
    let dir = temp_dir();
    let args = dipc_args([m, kib, packet], port, dir.path(), extra);
    let cleanup = port.parse::<u16>().ok().filter(|&p| p != 0);
    dipc_expect_refusal(&args, dir.path(), cleanup);
    let segment = std::path::PathBuf::from(format!("/dev/shm/dipc.{port}"));
    assert!(
        !segment.exists(),
        "`dipc {}` left {} behind",
        args.join(" "),
        segment.display()
    );
    assert!(
        !dir.path().join("dipc.pid").exists(),
        "`dipc {}` wrote a pid file",
        args.join(" ")
    );
}

#[test]
fn arguments_that_are_not_numbers() {
    let p = free_port().to_string();
    let p = p.as_str();
    refused(["abc", "8", p, "2"], &[]);
    refused(["4", "eight", p, "2"], &[]);
    refused(["4", "8", "port", "2"], &[]);
    refused(["4", "8", p, "2k"], &[]);
    refused(["4.5", "8", p, "2"], &[]);
    refused(["", "8", p, "2"], &[]);
    refused(["4", "8", p, "0x2"], &[]);
}

#[test]
fn zero_sizes() {
    let p = free_port().to_string();
    let p = p.as_str();
    refused(["0", "8", p, "2"], &[]);
    refused(["4", "0", p, "2"], &[]);
    refused(["4", "8", p, "0"], &[]);
}

#[test]
fn ports_out_of_range() {
    refused(["4", "8", "0", "2"], &[]);
    refused(["4", "8", "70000", "2"], &[]);
    refused(["4", "8", "65536", "2"], &[]);
    refused(["4", "8", "-5", "2"], &[]);
    refused(["4", "8", "99999999999999999999999", "2"], &[]);
}

/// Free space of /dev/shm in KiB.
fn shm_free_kib() -> u64 {
    let path = std::ffi::CString::new("/dev/shm").unwrap();
    // SAFETY: statvfs fills the struct we pass; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statvfs /dev/shm");
    st.f_bavail as u64 * st.f_frsize as u64 / 1024
}

#[test]
fn absurd_sizes() {
    let p = free_port().to_string();
    let p = p.as_str();
    refused(["1048576", "8", p, "2"], &[]);
    refused(["4097", "8", p, "2"], &[]);
    refused(["4", "1048577", p, "2"], &[]);
    refused(["4", "2000000", p, "2"], &[]);
    refused(["4", "8", p, "1025"], &[]);
    refused(["4", "8", p, "2048"], &[]);
    refused(["18446744073709551617", "8", p, "2"], &[]);
    // Within each limit, but 4 TiB in all.
    refused(["4096", "1048576", p, "1"], &[]);
    // Mailboxes of the largest size, one or two more than /dev/shm can hold.
    let gib_free = shm_free_kib() / 1_048_576;
    let mailboxes = (gib_free + 2).min(4096).to_string();
    refused([&mailboxes, "1048576", p, "1"], &[]);
}

#[test]
fn option_values_out_of_range() {
    let p = free_port().to_string();
    let p = p.as_str();
    for extra in [
        ["--workers", "0"],
        ["--workers", "257"],
        ["--workers", "many"],
        ["--lock-timeout", "0"],
        ["--lock-timeout", "3601"],
        ["--line-pause-ms", "0"],
        ["--line-pause-ms", "10001"],
        ["--grace", "soon"],
    ] {
        refused(["4", "8", p, "2"], &extra);
    }
}

#[test]
fn command_line_syntax_errors_are_one_line_too() {
    let p = free_port();
    let dir = temp_dir();
    let ps = p.to_string();
    let log = dir.path().join("dipc.log").to_string_lossy().into_owned();
    let pid = dir.path().join("dipc.pid").to_string_lossy().into_owned();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["4", "8"],
        vec!["4", "8", &ps],
        vec!["4", "8", &ps, "2", "9"],
        vec!["4", "8", &ps, "2", "--bogus"],
        vec!["4", "8", &ps, "2", "--workers"],
        vec!["4", "8", &ps, "2", "-x"],
    ];
    for case in cases {
        let mut args: Vec<&str> = case.clone();
        args.extend(["--log", &log, "--pid-file", &pid]);
        dipc_expect_refusal(&args, dir.path(), Some(p));
        assert!(!shm_path(p.into()).exists(), "dipc {case:?} left a segment");
        assert!(
            !dir.path().join("dipc.pid").exists(),
            "dipc {case:?} wrote a pid file"
        );
    }
}
