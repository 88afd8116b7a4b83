//! Writing descriptions back as their shortest endpoint strings.

use super::*;

impl fmt::Display for ServerDescription {
    /// Writes the shortest endpoint string for this description: the
    /// defaults are left out, and `tls` is written for `ssl`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerDescription::Tcp {
                interface,
                port,
                backlog,
            } => {
                write!(f, "tcp:{port}")?;
                write_listen_options(f, interface, *backlog)
            }
            ServerDescription::Unix {
                address,
                mode,
                backlog,
                lockfile,
            } => {
                write!(f, "unix:{}", Escaped(&positional_unix_path(address)))?;
                if *mode != DEFAULT_UNIX_MODE {
                    write!(f, ":mode={mode:o}")?;
                }
                if *backlog != DEFAULT_BACKLOG {
                    write!(f, ":backlog={backlog}")?;
                }
                if !lockfile {
                    f.write_str(":lockfile=0")?;
                }
                Ok(())
            }
            ServerDescription::Tls {
                interface,
                port,
                backlog,
                private_key,
                cert_key,
            } => {
                write!(
                    f,
                    "tls:{port}:privateKey={}",
                    Escaped(&path_text(private_key))
                )?;
                if cert_key != private_key {
                    write!(f, ":certKey={}", Escaped(&path_text(cert_key)))?;
                }
                write_listen_options(f, interface, *backlog)
            }
        }
    }
}

impl fmt::Display for ClientDescription {
    /// Writes the shortest endpoint string for this description: the
    /// defaults are left out, and `tls` is written for `ssl`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientDescription::Tcp {
                host,
                port,
                timeout,
                bind_address,
            } => {
                write!(f, "tcp:{}:{port}", Escaped(host))?;
                write_connect_options(f, *timeout, bind_address)
            }
            ClientDescription::Unix {
                address,
                timeout,
                lockfile,
            } => {
                write!(f, "unix:{}", Escaped(&positional_unix_path(address)))?;
                write_connect_options(f, *timeout, &None)?;
                if *lockfile {
                    f.write_str(":lockfile=1")?;
                }
                Ok(())
            }
            ClientDescription::Tls {
                host,
                port,
                timeout,
                bind_address,
                hostname,
                trust_roots,
                certificate,
                private_key,
            } => {
                write!(f, "tls:{}:{port}", Escaped(host))?;
                write_connect_options(f, *timeout, bind_address)?;
                if hostname != host {
                    write!(f, ":hostname={}", Escaped(hostname))?;
                }
                if let Some(trust_roots) = trust_roots {
                    write!(f, ":trustRoots={}", Escaped(&path_text(trust_roots)))?;
                }
                if let Some(certificate) = certificate {
                    write!(f, ":certificate={}", Escaped(&path_text(certificate)))?;
                }
                if let Some(private_key) = private_key
                    .as_ref()
                    .filter(|key| Some(*key) != certificate.as_ref())
                {
                    write!(f, ":privateKey={}", Escaped(&path_text(private_key)))?;
                }
                Ok(())
            }
        }
    }
}

fn write_listen_options(
    f: &mut fmt::Formatter<'_>,
    interface: &IpAddr,
    backlog: u32,
) -> fmt::Result {
    if *interface != IpAddr::V4(Ipv4Addr::UNSPECIFIED) {
        write!(f, ":interface={}", Escaped(&interface.to_string()))?;
    }
    if backlog != DEFAULT_BACKLOG {
        write!(f, ":backlog={backlog}")?;
    }
    Ok(())
}

fn write_connect_options(
    f: &mut fmt::Formatter<'_>,
    timeout: Duration,
    bind_address: &Option<IpAddr>,
) -> fmt::Result {
    if timeout != DEFAULT_TIMEOUT {
        write!(f, ":timeout={}", timeout.as_secs())?;
        let nanos = timeout.subsec_nanos();
        if nanos != 0 {
            let fraction = format!("{nanos:09}");
            write!(f, ".{}", fraction.trim_end_matches('0'))?;
        }
    }
    if let Some(bind_address) = bind_address {
        write!(f, ":bindAddress={}", Escaped(&bind_address.to_string()))?;
    }
    Ok(())
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A file path that starts with `@` would read back as an abstract name.
fn positional_unix_path(address: &UnixAddress) -> String {
    match address {
        UnixAddress::Path(path) => {
            let text = path_text(path);
            if text.starts_with('@') {
                format!("./{text}")
            } else {
                text
            }
        }
        UnixAddress::Abstract(_) | UnixAddress::Unnamed => address.to_string(),
    }
}

/// Writes a field with the separators it holds escaped. `=` is escaped
/// too: in a positional field it would otherwise make a keyword; and a
/// leading `[`, which would open a bracketed field.
struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (at, c) in self.0.chars().enumerate() {
            if matches!(c, ':' | '=' | '\\') || (at == 0 && c == '[') {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}
