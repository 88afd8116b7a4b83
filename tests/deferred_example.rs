//! The `deferred` example (the seed article's Deferred demo), run as a child
//! process: both paths print exactly the expected lines on stdout, about
//! two seconds after start, and the reactor stops itself (exit status 0).
//!
//! The examples are built once with `cargo build --examples`, as in
//! `tests/examples.rs`. Every wait is bounded; a child still running when
//! a test ends is killed.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the example may take (it fires after 2 s).
const WAIT: Duration = Duration::from_secs(15);

/// The path of the example binary `name`, building all examples on first
/// use.
fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<HashMap<String, PathBuf>, String>> = OnceLock::new();
    match BUILT.get_or_init(build_examples) {
        Ok(paths) => paths
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no example named {name}; built: {paths:?}")),
        Err(err) => panic!("building the examples failed:\n{err}"),
    }
}

/// Runs `cargo build --examples` and reads where each example binary went
/// from cargo's JSON messages.
fn build_examples() -> Result<HashMap<String, PathBuf>, String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let output = Command::new(env!("CARGO"))
        .args([
            "build",
            "--examples",
            "--message-format=json",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("could not run cargo: {err}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut paths = HashMap::new();
    for line in stdout.lines() {
        if !line.contains(r#""reason":"compiler-artifact""#)
            || !line.contains(r#""kind":["example"]"#)
        {
            continue;
        }
        let target = &line[line.find(r#""target":"#).unwrap_or(0)..];
        if let (Some(name), Some(exe)) =
            (json_string(target, "name"), json_string(line, "executable"))
        {
            paths.insert(name, PathBuf::from(exe));
        }
    }
    if paths.is_empty() {
        return Err(format!("cargo reported no example binaries:\n{stdout}"));
    }
    Ok(paths)
}

/// The first string value of `"key":"…"` in a line of JSON (enough for
/// cargo's messages: unescapes `\\` and `\"`).
fn json_string(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut value = String::new();
    let mut chars = json[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => value.push(chars.next()?),
            c => value.push(c),
        }
    }
    None
}

/// Kills the child if it is still running when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Reads all of `pipe` on a thread.
fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// What a finished run produced.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs the `deferred` example with `args` to completion, within `WAIT`.
fn run_deferred(args: &[&str]) -> Run {
    let started = Instant::now();
    let mut child = KillOnDrop(
        Command::new(example("deferred"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the deferred example"),
    );
    let stdout = read_all(child.0.stdout.take().unwrap());
    let stderr = read_all(child.0.stderr.take().unwrap());

    let deadline = started + WAIT;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for the example") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the deferred example {args:?} did not exit within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    Run {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        elapsed,
    }
}

fn stdout_lines(run: &Run) -> Vec<&str> {
    run.stdout.lines().collect()
}

#[test]
fn without_arguments_both_callbacks_print_and_the_reactor_stops() {
    let run = run_deferred(&[]);
    assert!(
        run.status.success(),
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    assert_eq!(
        stdout_lines(&run),
        ["Square of 5 is 25", "Twice of 5 is 10"],
        "stderr:\n{}",
        run.stderr
    );
    assert!(
        run.elapsed >= Duration::from_secs(2),
        "the chain fires after call_later(2 s), not after {:?}",
        run.elapsed
    );
    assert!(!run.stderr.contains("Unhandled error"), "{}", run.stderr);
}

#[test]
fn call_error_takes_the_errback_path_only() {
    let run = run_deferred(&["call_error"]);
    assert!(
        run.status.success(),
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    assert_eq!(
        stdout_lines(&run),
        ["Error with process: call_error asked for the errback path"],
        "stderr:\n{}",
        run.stderr
    );
    assert!(!run.stdout.contains("Square of"));
    assert!(
        run.elapsed >= Duration::from_secs(2),
        "the chain fires after call_later(2 s), not after {:?}",
        run.elapsed
    );
    assert!(!run.stderr.contains("Unhandled error"), "{}", run.stderr);
}

#[test]
fn an_unknown_argument_is_refused() {
    let run = run_deferred(&["bogus"]);
    assert_eq!(run.status.code(), Some(2), "stderr:\n{}", run.stderr);
    assert!(run.stdout.is_empty());
    assert!(run.stderr.contains("usage: deferred [call_error]"));
}
