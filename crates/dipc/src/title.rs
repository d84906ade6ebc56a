//! Process titles, as nginx and PostgreSQL set them: `ps x` shows each
//! process's role (`dipc: supervisor ...`, `dipc: worker 3: serving ...`)
//! followed by the original command line in parentheses, so that scripts
//! looking for the command line still find it.
//!
//! Linux shows, as a process's command line, the memory that held its
//! argv strings, which the environment strings follow. To make room, the
//! environment is copied to the heap once (the `environ` pointers are moved
//! to the copies), and the title is then written over both areas. Where
//! /proc does not describe the areas, titles are simply not set.

use std::ffi::{c_char, CStr, CString};

extern "C" {
    static mut environ: *mut *mut c_char;
}

/// The memory `ps` reads as this process's command line.
pub struct ProcTitle {
    area: *mut u8,
    len: usize,
    /// The command line as the user typed it, spaces between arguments.
    original: String,
    /// `dipc` or `echo-server`.
    program: &'static str,
}

/// The start and end addresses of the argv and environment strings, from
/// fields 48 to 51 of /proc/self/stat.
fn areas() -> Option<(usize, usize, usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Field 2, the command name, may hold spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<usize> = rest
        .split_whitespace()
        .skip(45) // rest starts at field 3; field 48 is the 46th
        .take(4)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    match fields[..] {
        [arg_start, arg_end, env_start, env_end] if arg_start < arg_end => {
            Some((arg_start, arg_end, env_start, env_end))
        }
        _ => None,
    }
}

impl ProcTitle {
    /// Claims the argv and environment areas for titles.
    ///
    /// # Safety
    /// The process must be single-threaded, and nothing may hold a pointer
    /// into its original argv or environment strings (such as a `CStr` from
    /// `getenv`), since both are overwritten by [`ProcTitle::set`].
    pub unsafe fn claim(program: &'static str) -> Option<ProcTitle> {
        let raw = std::fs::read("/proc/self/cmdline").ok()?;
        let original = String::from_utf8_lossy(&raw)
            .trim_end_matches('\0')
            .replace('\0', " ");
        let (arg_start, arg_end, env_start, env_end) = areas()?;
        let mut end = arg_end;
        // SAFETY: single-threaded (contract), so nobody reads or changes
        // `environ` meanwhile; each entry is a valid C string until we
        // replace it with a leaked copy that lives as long as the process.
        unsafe {
            let mut entry = environ;
            while !entry.is_null() && !(*entry).is_null() {
                let text = *entry as usize;
                if (env_start..env_end).contains(&text) {
                    let copy = CString::from(CStr::from_ptr(*entry));
                    *entry = copy.into_raw();
                }
                entry = entry.add(1);
            }
        }
        if env_start == arg_end && env_end > env_start {
            end = env_end;
        }
        Some(ProcTitle {
            area: arg_start as *mut u8,
            len: end - arg_start,
            original,
            program,
        })
    }

    /// Shows `<program>: <role> (<original command line>)` in `ps`, cut to
    /// the room there is.
    pub fn set(&self, role: &str) {
        let title = format!("{}: {role} ({})", self.program, self.original);
        let n = title.len().min(self.len - 1);
        // SAFETY: `area..area+len` is this process's argv and environment
        // memory (from /proc/self/stat), mapped and writable for its whole
        // life, and nothing else reads it any more (contract of `claim`):
        // only the kernel, for /proc/<pid>/cmdline.
        unsafe {
            std::ptr::copy_nonoverlapping(title.as_ptr(), self.area, n);
            std::ptr::write_bytes(self.area.add(n), 0, self.len - n);
        }
    }
}
