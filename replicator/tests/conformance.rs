//! Runs the conformance corpus (vectors produced by the original) against the
//! consistency functions: decide.jsonl, merge.jsonl and find.jsonl.
//!
//! The corpus directory is `CHEOPS_CONFORMANCE_DIR`, by default
//! `replicator/tests/conformance/` (a copy of the public corpus). Any mismatch fails the target
//! and names the file and line of the vector.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cheops_model::{Operation, ReplyDocument, ResourceConfig, ResourceDocument};
use cheops_replicator::consistency::{add_operation, operations_to_run, resolve_conflicts};
use serde::Deserialize;

/// Checks one vector (a line of JSON); the error says what differed.
type Check = fn(&str) -> Result<(), String>;

#[derive(Deserialize)]
struct DecideVector {
    config: ResourceConfig,
    existing: Option<Vec<Operation>>,
    new: Operation,
    expected: Option<Vec<Operation>>,
}

#[derive(Deserialize)]
struct MergeVector {
    main: ResourceDocument,
    conflicts: Vec<ResourceDocument>,
    expected: ResourceDocument,
}

#[derive(Deserialize)]
struct FindVector {
    operations: Option<Vec<Operation>>,
    replies: Option<Vec<ReplyDocument>>,
    config: ResourceConfig,
    expected: Option<Vec<Operation>>,
}

fn ids<'a>(ops: impl IntoIterator<Item = &'a Operation>) -> Vec<&'a str> {
    ops.into_iter().map(|op| op.request_id.as_str()).collect()
}

fn compare(what: &str, got: Vec<&str>, want: Vec<&str>) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, expected {want:?}"))
    }
}

fn check_decide(line: &str) -> Result<(), String> {
    let v: DecideVector = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let block = add_operation(&v.config, v.existing.as_deref().unwrap_or_default(), v.new);
    compare("block", ids(&block), ids(v.expected.iter().flatten()))
}

fn check_merge(line: &str) -> Result<(), String> {
    let v: MergeVector = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let resolved = resolve_conflicts(&v.main, &v.conflicts);
    compare(
        "operations",
        ids(&resolved.operations),
        ids(&v.expected.operations),
    )?;
    if resolved.config != v.expected.config {
        return Err(format!(
            "config: got {}, expected {}",
            serde_json::to_string(&resolved.config).unwrap_or_default(),
            serde_json::to_string(&v.expected.config).unwrap_or_default()
        ));
    }
    Ok(())
}

fn check_find(line: &str) -> Result<(), String> {
    let v: FindVector = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let replies = v.replies.unwrap_or_default();
    let replied: HashSet<&str> = replies.iter().map(|r| r.request_id.as_str()).collect();
    let block = v.operations.unwrap_or_default();
    let chosen = operations_to_run(&block, &replied, &v.config);
    compare("to run", ids(chosen), ids(v.expected.iter().flatten()))
}

/// Runs every vector of one file; returns (passed, failed) and prints each failure.
fn run_file(dir: &Path, name: &str, check: Check) -> (usize, usize) {
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", path.display());
            return (0, 1);
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match check(line) {
            Ok(()) => passed += 1,
            Err(why) => {
                failed += 1;
                eprintln!("FAIL {}:{}: {why}", path.display(), index + 1);
            }
        }
    }
    if passed + failed == 0 {
        eprintln!("{}: no vectors", path.display());
        failed = 1;
    }
    println!("{name}: {passed} passed, {failed} failed");
    (passed, failed)
}

fn main() -> ExitCode {
    let dir = std::env::var_os("CHEOPS_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance"));
    println!("conformance corpus: {}", dir.display());

    let files: [(&str, Check); 3] = [
        ("decide.jsonl", check_decide),
        ("merge.jsonl", check_merge),
        ("find.jsonl", check_find),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, check) in files {
        let (p, f) = run_file(&dir, name, check);
        passed += p;
        failed += f;
    }
    println!("conformance: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
