//! End-to-end checks of `tls_bench` over loopback: a smoke run measures
//! twill's `tls_echo_server` and tokio-rustls, with TLS and without, on
//! every scenario, and a TLS server whose echo differs from what was sent
//! fails the run.
//!
//! The faulty server is a blocking rustls server in this test binary: a
//! small script runs it with the `fake_tls_echo_server` test selected,
//! `TWILL_BENCH_FAKE_TLS` set and the runner's arguments (address,
//! certificate, key) passed on in `TWILL_BENCH_FAKE_TLS_ARGS`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

const TLS_BENCH: &str = env!("CARGO_BIN_EXE_tls_bench");
const FAKE_ENV: &str = "TWILL_BENCH_FAKE_TLS";

/// Where the benchmark binaries (and this package's examples, under
/// `examples/`) are.
fn bench_dir() -> PathBuf {
    Path::new(TLS_BENCH).parent().unwrap().to_path_buf()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An example of `package`, built (or found up to date) by cargo in this
/// test's profile, with `features`: its executable.
fn example(package: &str, name: &str, features: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "-p", package, "--example", name]);
    if !features.is_empty() {
        cmd.args(["--features", features]);
    }
    cmd.args(["--message-format=json", "--manifest-path"])
        .arg(&manifest)
        .stdin(Stdio::null());
    if bench_dir().file_name().is_some_and(|d| d == "release") {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo");
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The executable's path, from cargo's JSON message about the example.
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains(r#""kind":["example"]"#) && l.contains(r#""executable":""#))
        .unwrap_or_else(|| panic!("cargo reported no example binary:\n{stdout}"));
    let start = line.find(r#""executable":""#).unwrap() + r#""executable":""#.len();
    let end = start + line[start..].find('"').unwrap();
    PathBuf::from(line[start..end].replace("\\\\", "\\"))
}

fn tls_bench(args: &[&str], servers: &str, env: Option<(&str, &str)>) -> Output {
    let mut cmd = Command::new(TLS_BENCH);
    cmd.args(["--smoke", "--duration", "0.3"])
        .args(args)
        .arg("--servers")
        .arg(servers)
        .arg("--target-dir")
        .arg(bench_dir())
        .stdin(Stdio::null());
    if let Some((k, v)) = env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn smoke_measures_twill_and_tokio_rustls_with_and_without_tls() {
    let twill = example("twill", "tls_echo_server", "tls");
    let tokio = example("twill-bench", "tokio_rustls_echo", "");
    let (twill, tokio) = (twill.display(), tokio.display());
    let out = tls_bench(
        &[],
        &format!("twill={twill},twill_plain={twill},tokio_rustls={tokio},tokio_plain={tokio}"),
        None,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(!stdout.contains("FAILED"), "{stdout}");
    for scenario in ["4x16x1", "2x4096x2", "bulk", "handshake"] {
        assert!(stdout.contains(&format!("\n## {scenario}: ")), "{stdout}");
    }
    for server in ["twill", "twill_plain", "tokio_rustls", "tokio_plain"] {
        assert!(stdout.contains(&format!("\n| {server} | ")), "{stdout}");
    }
    // The TLS runs negotiated TLS 1.3; a known name given a path keeps
    // its flags, so `twill_plain` ran without TLS.
    assert!(stdout.contains("TLSv1_3 TLS13_"), "{stdout}");
    assert!(stdout.contains("| plain TCP"), "{stdout}");
    assert!(stdout.contains("| handshake | twill | "), "{stdout}");
    assert!(stdout.contains("| bulk | chunk | "), "{stdout}");
    assert!(stdout.contains("| handshake | tokio_rustls | "), "{stdout}");
}

#[test]
fn fails_on_a_corrupting_tls_server() {
    let script =
        std::env::temp_dir().join(format!("twill-tls-bench-fake-{}.sh", std::process::id()));
    let exe = std::env::current_exe().unwrap();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nTWILL_BENCH_FAKE_TLS_ARGS=\"$*\" exec '{}' fake_tls_echo_server --exact \
             --nocapture --test-threads=1\n",
            exe.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = tls_bench(
        &["--scenario", "4x64x4"],
        &format!("faulty={}", script.display()),
        Some((FAKE_ENV, "corrupt")),
    );
    let _ = std::fs::remove_file(&script);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("FAILED 4x64x4 faulty") && stdout.contains("VERIFY ERROR"),
        "{stdout}"
    );
    assert!(stdout.contains("| faulty | failed |"), "{stdout}");
}

/// Not a test on its own: with `TWILL_BENCH_FAKE_TLS=corrupt` set, this
/// process serves as a TLS echo server that flips one bit of each
/// connection's byte 1000, for the test above, until it is killed.
#[test]
fn fake_tls_echo_server() {
    if std::env::var(FAKE_ENV).as_deref() != Ok("corrupt") {
        return;
    }
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let args = std::env::var("TWILL_BENCH_FAKE_TLS_ARGS").unwrap();
    let args: Vec<&str> = args.split_whitespace().collect();
    let [addr, cert, key, ..] = args[..] else {
        panic!("expected ADDR CERT KEY, got {args:?}");
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let l = TcpListener::bind(addr).unwrap();
    eprintln!("[fake INFO] listening on {}", l.local_addr().unwrap());
    for s in l.incoming().flatten() {
        let config = config.clone();
        std::thread::spawn(move || {
            let conn = rustls::ServerConnection::new(config).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, s);
            let mut buf = [0u8; 4096];
            let mut total = 0usize;
            loop {
                let n = match tls.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if total <= 1000 && total + n > 1000 {
                    buf[1000 - total] ^= 0x01;
                }
                total += n;
                if tls.write_all(&buf[..n]).is_err() || tls.flush().is_err() {
                    return;
                }
            }
        });
    }
}
