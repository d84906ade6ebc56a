//! The coverage-guided fuzzer's corpus (fuzz/corpus/session, and any
//! crash it found in fuzz/regressions/session), replayed through the same
//! check it ran, so what it learned stays tested in `make test`.

mod support;

use std::path::Path;

use support::stream_check::{check_stream, stream_segment};

#[test]
fn the_fuzzers_corpus_still_passes() {
    let segment = stream_segment(922);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut replayed = 0;
    for dir in ["corpus/session", "regressions/session"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).expect("a corpus file");
            check_stream(&segment, &data);
            replayed += 1;
        }
    }
    assert!(
        replayed > 100,
        "only {replayed} inputs under {}",
        root.display()
    );
}
