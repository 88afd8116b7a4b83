//! Finding a Python interpreter for the tests' Python peers (Twisted,
//! `websockets`, `http.client`): `$TWILL_TWISTED_PYTHON` (CI exports it),
//! else the virtualenv `benches/venv.sh` makes under `$CARGO_TARGET_DIR`
//! or the workspace's `target/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The first candidate interpreter that can `import modules` (a comma
/// separated list, as Python writes it), or `None`: a test then prints
/// that it was skipped.
pub fn interpreter_with(modules: &str) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("TWILL_TWISTED_PYTHON") {
        candidates.push(PathBuf::from(path));
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(target).join("twisted-venv/bin/python"));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    candidates.push(workspace.join("target/twisted-venv/bin/python"));
    candidates.into_iter().find(|python| {
        Command::new(python)
            .args(["-c", &format!("import {modules}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}
