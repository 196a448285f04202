//! Replays every input that once crashed a fuzz target (`tests/fuzz-regressions/<target>/`)
//! and every committed seed (`fuzz/seeds/<target>/`) through the same entry points the fuzz
//! targets run, so each crash found becomes a regression test.

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read dir entry").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_fuzz_regression_and_seed_passes() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    let mut failures = Vec::new();
    for (target, run) in cutover::fuzzing::TARGETS {
        let dirs = [
            crate_dir.join("tests/fuzz-regressions").join(target),
            crate_dir.join("../fuzz/seeds").join(target),
        ];
        assert!(dirs[0].is_dir(), "{} is missing", dirs[0].display());
        for input in dirs.iter().flat_map(|d| inputs(d)) {
            let data = std::fs::read(&input).expect("read input");
            replayed += 1;
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                failures.push(format!("{target}: {}", input.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "inputs that still crash:\n{}",
        failures.join("\n")
    );
    assert!(replayed > 0);
}
