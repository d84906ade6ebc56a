//! The coverage-guided fuzzer's corpus (fuzz/corpus/session, and any
//! crash it found in fuzz/regressions/session), replayed through the same
//! check it ran, so what it learned stays tested in `make test`.

mod support;

use std::path::Path;
use std::time::Duration;

use shmlib::{DaemonRecord, Geometry, Segment};

#[test]
fn the_fuzzers_corpus_still_passes() {
    const PORT: u16 = 922;
    let _ = Segment::unlink(PORT);
    let geometry = Geometry::from_kib(2, 1, 1, 1)
        .and_then(|g| g.with_keys(16))
        .expect("geometry");
    let record = DaemonRecord {
        pid_file: "",
        log_file: "",
        db_lock_file: "",
        grace: Duration::from_secs(1),
    };
    let segment = Segment::create(PORT, geometry, &record).expect("segment");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut replayed = 0;
    for dir in ["corpus/session", "regressions/session"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).expect("a corpus file");
            support::stream_check::check_stream(&segment, &data);
            replayed += 1;
        }
    }
    assert!(
        replayed > 100,
        "only {replayed} inputs under {}",
        root.display()
    );
}
