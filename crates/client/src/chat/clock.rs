//! The local time of day, `HH:MM:SS`, that signs a chat line.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn hh_mm_ss() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let now = libc::time_t::try_from(secs).unwrap_or(0);
    // SAFETY: `libc::tm` is a plain C struct of integers and (on glibc) a
    // `*const c_char` zone name: all-zero bytes are a valid value of every
    // field (0, and a null pointer), so zeroed() makes a valid `tm`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers come from references to live locals, so they
    // are valid and aligned for the call; localtime_r reads `now`, writes
    // only into `tm` (no static buffer: it is the thread-safe form of
    // localtime), and keeps neither pointer after it returns.
    let local = unsafe { libc::localtime_r(&now, &mut tm) };
    if local.is_null() {
        // No time zone to be had: UTC.
        let day = secs % 86_400;
        return format!("{:02}:{:02}:{:02}", day / 3600, day / 60 % 60, day % 60);
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_digits_each() {
        let t = super::hh_mm_ss();
        let parts: Vec<u32> = t.split(':').map(|p| p.parse().expect("a number")).collect();
        assert_eq!(t.len(), 8, "{t}");
        assert!(
            parts.len() == 3 && parts[0] < 24 && parts[1] < 60 && parts[2] < 61,
            "{t}"
        );
    }
}
