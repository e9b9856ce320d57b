//! Replays the committed fuzz corpus and every past finding through the fuzz targets
//! (`khoa_server::fuzzing`) on stable Rust: each input must be handled without a panic.
//! `fuzz/corpus/<target>/` holds the seeds and what fuzzing kept; findings go to
//! `fuzz/regressions/<target>/` (scripts/fuzz.sh says how).

use std::path::Path;

#[test]
fn every_corpus_and_regression_input_is_handled() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    for (name, target) in khoa_server::fuzzing::TARGETS {
        let mut inputs = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else { continue };
            for entry in entries.flatten() {
                let data = std::fs::read(entry.path()).unwrap();
                target(&data);
                inputs += 1;
            }
        }
        assert!(inputs > 0, "no corpus for {name}");
    }
}
