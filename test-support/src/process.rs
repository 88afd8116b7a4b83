//! Example programs run as child processes.
//!
//! The examples of a cargo package are built once per test binary with
//! `cargo build -p PACKAGE --examples` (and `--features …` for
//! [`example_with_features`]); a [`Proc`] runs one with `RUST_LOG=info`,
//! reads its stdout and stderr line by line on threads (and writes its
//! standard input, for [`Proc::start_with_input`]), waits for lines and
//! for its exit with bounded timeouts, and kills it when dropped, so a
//! failing test never leaves a child behind.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a [`Proc`] waits for any one thing by default.
pub const WAIT: Duration = Duration::from_secs(10);

/// Where each example binary of a package went, or why the build failed.
type Built = Result<HashMap<String, PathBuf>, String>;

/// The path of the example binary `name` of the cargo package `package`,
/// building all of that package's examples on first use.
pub fn example(package: &str, name: &str) -> PathBuf {
    example_with_features(package, &[], name)
}

/// [`example`], with the package's `features` turned on (`&["tls"]`): for
/// examples that need them (`required-features`, or code under
/// `#[cfg(feature = …)]`).
///
/// Cargo puts an example's binary at one path whatever the features, so a
/// later build with other features would replace it under a test still
/// running it; the binaries of a build with features are therefore
/// hard-linked into a folder of their own (`examples/features-tls/NAME`)
/// right after the build, and run from there.
pub fn example_with_features(package: &str, features: &[&str], name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<(String, String), Built>>> = OnceLock::new();
    let features = features.join(",");
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|err| err.into_inner());
    match built
        .entry((package.to_owned(), features.clone()))
        .or_insert_with(|| build_examples(package, &features))
    {
        Ok(paths) => paths.get(name).cloned().unwrap_or_else(|| {
            panic!("no example named {name} in {package} (features {features:?}); built: {paths:?}")
        }),
        Err(err) => {
            panic!("building the examples of {package} (features {features:?}) failed:\n{err}")
        }
    }
}

/// Runs `cargo build -p PACKAGE --examples [--features FEATURES]` and
/// reads where each example binary went from cargo's JSON messages (this
/// honours CARGO_TARGET_DIR and any build configuration); with features,
/// links the binaries into a folder of their own (see
/// [`example_with_features`]).
fn build_examples(package: &str, features: &str) -> Built {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut command = Command::new(env!("CARGO"));
    command.args([
        "build",
        "-p",
        package,
        "--examples",
        "--message-format=json",
    ]);
    if !features.is_empty() {
        command.args(["--features", features]);
    }
    // What cargo set for this test binary describes it, not the build: a
    // crate that reads CARGO_MANIFEST_DIR at compile time (ring does)
    // would otherwise be rebuilt here, and again by the next cargo run.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if matches!(
            &*name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
        ) || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
        {
            command.env_remove(&*name);
        }
    }
    let output = command
        .arg("--manifest-path")
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
    if !features.is_empty() {
        for exe in paths.values_mut() {
            *exe = set_aside(exe, features)?;
        }
    }
    Ok(paths)
}

/// Hard-links (or else copies) the binary `exe` to
/// `DIR/features-FEATURES/NAME` beside it and returns that path.
fn set_aside(exe: &Path, features: &str) -> Result<PathBuf, String> {
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        return Err(format!("no folder or name in {}", exe.display()));
    };
    let folder = dir.join(format!("features-{}", features.replace(',', "+")));
    let aside = folder.join(name);
    let failed = |what: &str, err: std::io::Error| format!("{what} {}: {err}", aside.display());
    std::fs::create_dir_all(&folder)
        .map_err(|err| failed("could not create the folder of", err))?;
    match std::fs::remove_file(&aside) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(failed("could not replace", err))
        }
        _ => {}
    }
    if std::fs::hard_link(exe, &aside).is_err() {
        std::fs::copy(exe, &aside).map_err(|err| failed("could not copy the binary to", err))?;
    }
    Ok(aside)
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

/// Which output stream a line came from.
#[derive(Clone, Copy, PartialEq)]
enum Stream {
    Out,
    Err,
}

/// Every line a child printed so far, in order, with its stream.
type Transcript = Arc<Mutex<Vec<(Stream, String)>>>;

/// A running child process; killed (if still running) when dropped.
pub struct Proc {
    name: String,
    child: Child,
    stdout: Receiver<Option<String>>,
    stderr: Receiver<Option<String>>,
    transcript: Transcript,
    wait: Duration,
}

impl Proc {
    /// Starts the example `name` of the cargo package `package` with `args`.
    pub fn example(package: &str, name: &str, args: &[&str]) -> Proc {
        Proc::example_with_features(package, &[], name, args)
    }

    /// Starts the example `name` of the cargo package `package`, built with
    /// `features` ([`example_with_features`]), with `args`.
    pub fn example_with_features(
        package: &str,
        features: &[&str],
        name: &str,
        args: &[&str],
    ) -> Proc {
        let mut command = Command::new(example_with_features(package, features, name));
        command.args(args);
        Proc::start(name, command)
    }

    /// Starts `command` with `RUST_LOG=info`, no stdin and both outputs
    /// read line by line; `name` names it in failure messages. Waits are
    /// bounded by [`WAIT`] unless changed with [`Proc::wait_limit`].
    pub fn start(name: &str, command: Command) -> Proc {
        Proc::spawn(name, command, None)
    }

    /// [`Proc::start`], with `input` written to the child's standard input
    /// (on a thread, so a child that reads slowly cannot block the test),
    /// which is then closed.
    pub fn start_with_input(name: &str, command: Command, input: &[u8]) -> Proc {
        Proc::spawn(name, command, Some(input.to_vec()))
    }

    fn spawn(name: &str, mut command: Command, input: Option<Vec<u8>>) -> Proc {
        let mut child = command
            .env("RUST_LOG", "info")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("could not start {name}: {err}"));
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // A child that exits without reading all of it closes the pipe:
            // not this helper's business.
            std::thread::spawn(move || {
                let _ = stdin.write_all(&input);
            });
        }
        let transcript = Transcript::default();
        let stdout = lines(child.stdout.take().unwrap(), Stream::Out, &transcript);
        let stderr = lines(child.stderr.take().unwrap(), Stream::Err, &transcript);
        Proc {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
            transcript,
            wait: WAIT,
        }
    }

    /// Sets how long each later wait (for a line, or for the exit) may take.
    pub fn wait_limit(mut self, wait: Duration) -> Proc {
        self.wait = wait;
        self
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every line printed so far, tagged `[out]` or `[err]`, for failure
    /// messages.
    pub fn transcript(&self) -> String {
        let transcript = self.transcript.lock().unwrap();
        let tagged: Vec<String> = transcript
            .iter()
            .map(|(stream, line)| match stream {
                Stream::Out => format!("[out] {line}"),
                Stream::Err => format!("[err] {line}"),
            })
            .collect();
        tagged.join("\n")
    }

    /// Everything read from stdout so far, each line ending in `\n`.
    pub fn stdout_text(&self) -> String {
        self.text(Stream::Out)
    }

    /// Everything read from stderr so far, each line ending in `\n`.
    pub fn stderr_text(&self) -> String {
        self.text(Stream::Err)
    }

    fn text(&self, wanted: Stream) -> String {
        let transcript = self.transcript.lock().unwrap();
        transcript
            .iter()
            .filter(|(stream, _)| *stream == wanted)
            .map(|(_, line)| format!("{line}\n"))
            .collect()
    }

    /// Waits for a line containing `needle` on stdout and returns it; lines
    /// before it are skipped.
    pub fn wait_stdout(&self, needle: &str) -> String {
        self.wait_for(Stream::Out, needle)
    }

    /// Waits for a line containing `needle` on stderr (where the log goes)
    /// and returns it; lines before it are skipped.
    pub fn wait_stderr(&self, needle: &str) -> String {
        self.wait_for(Stream::Err, needle)
    }

    fn wait_for(&self, stream: Stream, needle: &str) -> String {
        let (lines, which) = match stream {
            Stream::Out => (&self.stdout, "stdout"),
            Stream::Err => (&self.stderr, "stderr"),
        };
        let deadline = Instant::now() + self.wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(Some(line)) if line.contains(needle) => return line,
                Ok(Some(_)) => {}
                Ok(None) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "{} closed its {which} before printing {needle:?}:\n{}",
                    self.name,
                    self.transcript()
                ),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{} did not print {needle:?} within {:?}:\n{}",
                    self.name,
                    self.wait,
                    self.transcript()
                ),
            }
        }
    }

    /// The address from the `listening on ADDR` log line, which must be on
    /// 127.0.0.1 with a real port.
    pub fn listening_addr(&self) -> SocketAddr {
        let line = self.wait_stderr("listening on ");
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_default();
        let addr: SocketAddr = addr
            .parse()
            .unwrap_or_else(|_| panic!("no address in {line:?}"));
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
        assert_ne!(addr.port(), 0);
        addr
    }

    /// Sends SIGTERM with `kill -TERM PID`.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits for the child to exit, as [`wait_exit`](Self::wait_exit),
    /// and fails the test, with its transcript, unless the status is 0.
    pub fn expect_clean_exit(&mut self) {
        let status = self.wait_exit();
        assert_eq!(
            status.code(),
            Some(0),
            "exit status {status}:\n{}",
            self.transcript()
        );
    }

    /// Waits for the child to exit (its stdout and stderr reach EOF, then
    /// it is reaped) and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + self.wait;
        for lines in [&self.stdout, &self.stderr] {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match lines.recv_timeout(left) {
                    Ok(Some(_)) => {}
                    Ok(None) | Err(RecvTimeoutError::Disconnected) => break,
                    Err(RecvTimeoutError::Timeout) => panic!(
                        "{} did not exit within {:?}:\n{}",
                        self.name,
                        self.wait,
                        self.transcript()
                    ),
                }
            }
        }
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} closed its output but did not exit within {:?}",
                self.name,
                self.wait
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Reads `pipe` line by line on a thread, recording each line in
/// `transcript`: `Some(line)` for each, `None` at EOF. The pipe is drained
/// to the end even if nobody reads the lines, so the child never blocks on
/// a full pipe.
fn lines(
    pipe: impl Read + Send + 'static,
    stream: Stream,
    transcript: &Transcript,
) -> Receiver<Option<String>> {
    let (tx, rx) = mpsc::channel();
    let transcript = transcript.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            transcript.lock().unwrap().push((stream, line.clone()));
            let _ = tx.send(Some(line));
        }
        let _ = tx.send(None);
    });
    rx
}
