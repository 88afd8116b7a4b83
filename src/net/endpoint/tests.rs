//! The grammar of endpoint strings, form by form.

use super::parse::{split_fields, Field};
use super::*;
use std::net::Ipv6Addr;

fn server(description: &str) -> ServerDescription {
    parse_server(description).unwrap_or_else(|error| panic!("{error}"))
}

fn client(description: &str) -> ClientDescription {
    parse_client(description).unwrap_or_else(|error| panic!("{error}"))
}

fn server_error(description: &str) -> EndpointError {
    match parse_server(description) {
        Ok(parsed) => panic!("{description} parsed as {parsed:?}"),
        Err(error) => error,
    }
}

fn client_error(description: &str) -> EndpointError {
    match parse_client(description) {
        Ok(parsed) => panic!("{description} parsed as {parsed:?}"),
        Err(error) => error,
    }
}

fn tcp_server(interface: &str, port: u16, backlog: u32) -> ServerDescription {
    ServerDescription::Tcp {
        interface: interface.parse().unwrap(),
        port,
        backlog,
    }
}

fn tcp_client(host: &str, port: u16) -> ClientDescription {
    ClientDescription::Tcp {
        host: host.to_owned(),
        port,
        timeout: DEFAULT_TIMEOUT,
        bind_address: None,
    }
}

fn unix_file(path: &str) -> UnixAddress {
    UnixAddress::Path(PathBuf::from(path))
}

// Splitting into fields.

#[test]
fn fields_split_on_colons_and_keywords_on_their_first_equals_sign() {
    assert_eq!(
        split_fields("tcp:8007:interface=127.0.0.1:x=a=b").unwrap(),
        vec![
            Field::Positional("tcp".into()),
            Field::Positional("8007".into()),
            Field::Keyword("interface".into(), "127.0.0.1".into()),
            Field::Keyword("x".into(), "a=b".into()),
        ]
    );
}

#[test]
fn a_backslash_takes_the_next_character_literally() {
    assert_eq!(
        split_fields(r"a\:b:c\\d:k\=ey=v\:al:e\=q").unwrap(),
        vec![
            Field::Positional("a:b".into()),
            Field::Positional(r"c\d".into()),
            Field::Keyword("k=ey".into(), "v:al".into()),
            Field::Positional("e=q".into()),
        ]
    );
}

#[test]
fn a_value_opening_with_a_bracket_keeps_its_colons_up_to_the_closing_bracket() {
    assert_eq!(
        split_fields("tcp:[::1]:8007:bindAddress=[fe80::1]:x=a[:]").unwrap(),
        vec![
            Field::Positional("tcp".into()),
            Field::Positional("[::1]".into()),
            Field::Positional("8007".into()),
            Field::Keyword("bindAddress".into(), "[fe80::1]".into()),
            Field::Keyword("x".into(), "a[".into()),
            Field::Positional("]".into()),
        ]
    );
    assert_eq!(
        split_fields(r"\[a:b]").unwrap(),
        vec![
            Field::Positional("[a".into()),
            Field::Positional("b]".into())
        ]
    );
}

#[test]
fn a_trailing_backslash_is_an_error() {
    let error = server_error(r"tcp:8007\");
    assert_eq!(error.field(), None);
    assert_eq!(
        error.to_string(),
        r#"endpoint "tcp:8007\": a trailing backslash escapes nothing"#
    );
}

// Endpoint types.

#[test]
fn the_endpoint_type_is_case_insensitive() {
    assert_eq!(server("TCP:8007"), tcp_server("0.0.0.0", 8007, 50));
    assert_eq!(server("Tcp:8007"), tcp_server("0.0.0.0", 8007, 50));
    assert_eq!(client("UNIX:/s"), client("unix:/s"));
    assert_eq!(client("TLS:example.com:443"), client("tls:example.com:443"));
}

#[test]
fn ssl_is_tls() {
    assert_eq!(
        server("ssl:443:privateKey=k.pem"),
        server("tls:443:privateKey=k.pem")
    );
    assert_eq!(client("SSL:example.com:443"), client("tls:example.com:443"));
}

#[test]
fn an_empty_string_is_an_error() {
    assert_eq!(
        server_error("").to_string(),
        r#"endpoint "": empty endpoint string"#
    );
    assert_eq!(client_error("").problem(), "empty endpoint string");
}

#[test]
fn an_unknown_type_is_an_error() {
    let error = server_error("udp:53");
    assert_eq!(error.field(), None);
    assert_eq!(
        error.to_string(),
        r#"endpoint "udp:53": unknown endpoint type "udp" (tcp, unix, tls or ssl)"#
    );
    assert_eq!(
        client_error("port=80").problem(),
        r#"unknown endpoint type "port=80" (tcp, unix, tls or ssl)"#
    );
}

// TCP servers.

#[test]
fn a_tcp_server_listens_on_every_ipv4_interface_with_a_backlog_of_50() {
    assert_eq!(server("tcp:8007"), tcp_server("0.0.0.0", 8007, 50));
    assert_eq!(server("tcp:0"), tcp_server("0.0.0.0", 0, 50));
}

#[test]
fn a_tcp_server_takes_an_interface_and_a_backlog() {
    assert_eq!(
        server("tcp:8007:interface=127.0.0.1"),
        tcp_server("127.0.0.1", 8007, 50)
    );
    assert_eq!(
        server("tcp:8007:backlog=5:interface=127.0.0.1"),
        tcp_server("127.0.0.1", 8007, 5)
    );
}

#[test]
fn a_tcp_server_takes_its_port_by_keyword() {
    assert_eq!(server("tcp:port=8007"), tcp_server("0.0.0.0", 8007, 50));
    assert_eq!(
        server("tcp:interface=127.0.0.1:port=8007"),
        tcp_server("127.0.0.1", 8007, 50)
    );
}

#[test]
fn an_ipv6_interface_is_escaped_or_in_brackets() {
    let loopback = tcp_server("::1", 8007, 50);
    assert_eq!(server(r"tcp:8007:interface=\:\:1"), loopback);
    assert_eq!(server("tcp:8007:interface=[::1]"), loopback);
    assert_eq!(server(r"tcp:8007:interface=[\:\:1]"), loopback);
}

#[test]
fn an_unescaped_ipv6_interface_splits_into_fields() {
    assert_eq!(
        server_error("tcp:8007:interface=::1").problem(),
        r#"too many positional fields: "" (a tcp server takes port by position)"#
    );
}

#[test]
fn a_tcp_server_port_must_be_a_port_number() {
    let error = server_error("tcp:80x");
    assert_eq!(error.field(), Some("port"));
    assert_eq!(
        error.to_string(),
        r#"endpoint "tcp:80x": field port: "80x" is not a port number (0-65535)"#
    );
    for bad in ["65536", "+80", "-1", "", " 80"] {
        let error = server_error(&format!("tcp:{bad}"));
        assert_eq!(
            error.problem(),
            format!("field port: \"{bad}\" is not a port number (0-65535)")
        );
    }
}

#[test]
fn a_tcp_server_needs_a_port() {
    let error = server_error("tcp");
    assert_eq!(error.field(), Some("port"));
    assert_eq!(error.to_string(), r#"endpoint "tcp": missing field port"#);
    assert_eq!(
        server_error("tcp:interface=127.0.0.1").problem(),
        "missing field port"
    );
}

#[test]
fn a_tcp_server_interface_must_be_an_ip_address() {
    let error = server_error("tcp:80:interface=localhost");
    assert_eq!(error.field(), Some("interface"));
    assert_eq!(
        error.problem(),
        r#"field interface: "localhost" is not an IP address"#
    );
}

#[test]
fn a_tcp_server_backlog_must_be_a_count() {
    let error = server_error("tcp:80:backlog=many");
    assert_eq!(error.field(), Some("backlog"));
    assert_eq!(
        error.problem(),
        r#"field backlog: "many" is not a number of connections"#
    );
}

#[test]
fn a_tcp_server_rejects_unknown_fields_by_name() {
    let error = server_error("tcp:80:foo=1");
    assert_eq!(error.field(), Some("foo"));
    assert_eq!(
        error.problem(),
        r#"unknown field "foo" (a tcp server knows port, interface, backlog)"#
    );
    // Keyword names are case-sensitive, as in Twisted.
    assert_eq!(
        server_error("tcp:80:Interface=::1").field(),
        Some("Interface")
    );
}

#[test]
fn a_field_given_twice_is_an_error() {
    let error = server_error("tcp:port=80:port=81");
    assert_eq!(error.field(), Some("port"));
    assert_eq!(error.problem(), "a field given twice: port");
    assert_eq!(
        server_error("tcp:80:backlog=1:backlog=2").problem(),
        "a field given twice: backlog"
    );
}

#[test]
fn a_positional_field_whose_slot_was_given_by_keyword_is_one_too_many() {
    let error = server_error("tcp:80:port=81");
    assert_eq!(error.field(), None);
    assert_eq!(
        error.problem(),
        r#"too many positional fields: "80" (a tcp server takes port by position)"#
    );
    assert_eq!(
        server_error("tcp:80:81").problem(),
        r#"too many positional fields: "81" (a tcp server takes port by position)"#
    );
}

// Unix servers.

#[test]
fn a_unix_server_has_mode_666_backlog_50_and_a_lock_file() {
    assert_eq!(
        server("unix:/var/run/app.sock"),
        ServerDescription::Unix {
            address: unix_file("/var/run/app.sock"),
            mode: 0o666,
            backlog: 50,
            lockfile: true,
        }
    );
}

#[test]
fn a_unix_server_takes_address_mode_backlog_and_lockfile() {
    let expected = ServerDescription::Unix {
        address: unix_file("/tmp/s"),
        mode: 0o660,
        backlog: 7,
        lockfile: false,
    };
    assert_eq!(
        server("unix:/tmp/s:mode=660:backlog=7:lockfile=0"),
        expected
    );
    assert_eq!(
        server("unix:lockfile=0:address=/tmp/s:backlog=7:mode=0660"),
        expected
    );
    assert_eq!(
        server("unix:address=/tmp/s:mode=0o660:backlog=7:lockfile=0"),
        expected
    );
}

#[test]
fn a_unix_path_may_hold_escaped_colons_and_equals_signs() {
    let ServerDescription::Unix { address, .. } = server(r"unix:/tmp/a\:b\=c\\d") else {
        panic!("not a unix server");
    };
    assert_eq!(address, unix_file(r"/tmp/a:b=c\d"));
    // After the first `=` of a keyword field, `=` needs no escape.
    let ClientDescription::Unix { address, .. } = client("unix:path=/tmp/a=b") else {
        panic!("not a unix client");
    };
    assert_eq!(address, unix_file("/tmp/a=b"));
}

#[test]
fn a_unix_path_starting_with_at_is_an_abstract_name() {
    let ServerDescription::Unix { address, .. } = server("unix:@app") else {
        panic!("not a unix server");
    };
    assert_eq!(address, UnixAddress::Abstract(b"app".to_vec()));
    assert_eq!(address.to_string(), "@app");
}

#[test]
fn a_unix_mode_must_be_octal() {
    let error = server_error("unix:/tmp/s:mode=999");
    assert_eq!(error.field(), Some("mode"));
    assert_eq!(
        error.to_string(),
        r#"endpoint "unix:/tmp/s:mode=999": field mode: "999" is not an octal file mode"#
    );
    for bad in ["", "rw", "17777", "+7", "0x1ff"] {
        assert_eq!(
            server_error(&format!("unix:/tmp/s:mode={bad}")).problem(),
            format!("field mode: \"{bad}\" is not an octal file mode")
        );
    }
}

#[test]
fn a_lockfile_is_0_or_1() {
    let error = server_error("unix:/tmp/s:lockfile=yes");
    assert_eq!(error.field(), Some("lockfile"));
    assert_eq!(error.problem(), r#"field lockfile: "yes" is not 0 or 1"#);
}

#[test]
fn a_unix_path_must_fit_in_sun_path() {
    let longest = format!("/{}", "a".repeat(MAX_UNIX_PATH - 1));
    server(&format!("unix:{longest}"));
    let too_long = format!("{longest}a");
    let error = server_error(&format!("unix:{too_long}"));
    assert_eq!(error.field(), Some("address"));
    assert_eq!(
        error.problem(),
        format!(
            "unix path too long: {} bytes, the limit is {MAX_UNIX_PATH}",
            too_long.len()
        )
    );
    server(&format!("unix:@{}", "a".repeat(MAX_UNIX_PATH)));
    let error = client_error(&format!("unix:@{}", "a".repeat(MAX_UNIX_PATH + 1)));
    assert_eq!(error.field(), Some("path"));
    assert_eq!(
        error.problem(),
        format!(
            "unix path too long: {} bytes, the limit is {MAX_UNIX_PATH}",
            MAX_UNIX_PATH + 1
        )
    );
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn the_linux_limit_is_107_bytes() {
    let error = server_error(&format!("unix:/{}", "a".repeat(107)));
    assert_eq!(
        error.problem(),
        "unix path too long: 108 bytes, the limit is 107"
    );
}

#[test]
fn a_unix_path_is_not_empty() {
    let error = server_error("unix:");
    assert_eq!(error.field(), Some("address"));
    assert_eq!(error.problem(), "field address: empty path");
    assert_eq!(server_error("unix").problem(), "missing field address");
    assert_eq!(
        server_error("unix:@").problem(),
        "field address: an abstract name needs at least one byte after @"
    );
}

// TLS servers.

#[test]
fn a_tls_server_takes_its_certificate_from_the_private_key_file_by_default() {
    assert_eq!(
        server("tls:443:privateKey=server.pem"),
        ServerDescription::Tls {
            interface: Ipv4Addr::UNSPECIFIED.into(),
            port: 443,
            backlog: 50,
            private_key: "server.pem".into(),
            cert_key: "server.pem".into(),
        }
    );
}

#[test]
fn a_tls_server_takes_all_its_fields() {
    assert_eq!(
        server(r"tls:privateKey=/k\:ey.pem:certKey=cert.pem:interface=\:\::backlog=9:port=8443"),
        ServerDescription::Tls {
            interface: Ipv6Addr::UNSPECIFIED.into(),
            port: 8443,
            backlog: 9,
            private_key: "/k:ey.pem".into(),
            cert_key: "cert.pem".into(),
        }
    );
}

#[test]
fn a_tls_server_needs_a_private_key() {
    let error = server_error("tls:443");
    assert_eq!(error.field(), Some("privateKey"));
    assert_eq!(
        error.to_string(),
        r#"endpoint "tls:443": missing field privateKey"#
    );
    assert_eq!(
        server_error("tls:443:privateKey=").problem(),
        "field privateKey: empty file name"
    );
}

#[test]
fn a_tls_server_rejects_fields_not_yet_supported() {
    let error = server_error("tls:443:privateKey=k.pem:extraCertChain=chain.pem");
    assert_eq!(error.field(), Some("extraCertChain"));
    assert_eq!(
        error.problem(),
        r#"unknown field "extraCertChain" (a tls server knows port, interface, backlog, privateKey, certKey)"#
    );
}

// TCP clients.

#[test]
fn a_tcp_client_takes_host_and_port_by_position_or_keyword() {
    let expected = tcp_client("example.com", 80);
    assert_eq!(client("tcp:example.com:80"), expected);
    assert_eq!(client("tcp:host=example.com:port=80"), expected);
    assert_eq!(client("tcp:port=80:host=example.com"), expected);
    assert_eq!(client("tcp:host=example.com:80"), expected);
    assert_eq!(client("tcp:example.com:port=80"), expected);
    assert_eq!(client("tcp:port=80:example.com"), expected);
}

#[test]
fn a_tcp_client_waits_30_seconds_by_default() {
    let ClientDescription::Tcp { timeout, .. } = client("tcp:example.com:80") else {
        panic!("not a tcp client");
    };
    assert_eq!(timeout, Duration::from_secs(30));
}

#[test]
fn a_tcp_client_takes_a_timeout_in_whole_or_decimal_seconds_and_a_bind_address() {
    assert_eq!(
        client("tcp:example.com:80:timeout=2.5:bindAddress=192.0.2.1"),
        ClientDescription::Tcp {
            host: "example.com".into(),
            port: 80,
            timeout: Duration::from_millis(2500),
            bind_address: Some("192.0.2.1".parse().unwrap()),
        }
    );
    let ClientDescription::Tcp { timeout, .. } = client("tcp:h:1:timeout=0.000000001") else {
        panic!("not a tcp client");
    };
    assert_eq!(timeout, Duration::from_nanos(1));
    let ClientDescription::Tcp { timeout, .. } = client("tcp:h:1:timeout=10") else {
        panic!("not a tcp client");
    };
    assert_eq!(timeout, Duration::from_secs(10));
}

#[test]
fn an_ipv6_host_is_escaped_or_in_brackets() {
    let expected = tcp_client("::1", 8007);
    assert_eq!(client(r"tcp:\:\:1:8007"), expected);
    assert_eq!(client("tcp:host=[::1]:port=8007"), expected);
    assert_eq!(client(r"tcp:[\:\:1]:8007"), expected);
    assert_eq!(client("tcp:[::1]:8007"), expected);
    let ClientDescription::Tcp { bind_address, .. } = client(r"tcp:\:\:1:8007:bindAddress=\:\:1")
    else {
        panic!("not a tcp client");
    };
    assert_eq!(bind_address, Some(Ipv6Addr::LOCALHOST.into()));
}

#[test]
fn a_tcp_client_needs_a_host_and_a_port_to_connect_to() {
    let error = client_error("tcp:example.com");
    assert_eq!(error.field(), Some("port"));
    assert_eq!(
        error.to_string(),
        r#"endpoint "tcp:example.com": missing field port"#
    );
    assert_eq!(client_error("tcp:port=80").problem(), "missing field host");
    assert_eq!(
        client_error("tcp::80").problem(),
        r#"field host: "" is not a host name"#
    );
    assert_eq!(
        client_error("tcp:example.com:0").problem(),
        r#"field port: "0" is not a port number to connect to (1-65535)"#
    );
    assert_eq!(
        client_error("tcp:example.com:http").problem(),
        r#"field port: "http" is not a port number to connect to (1-65535)"#
    );
}

#[test]
fn a_timeout_is_a_plain_number_of_seconds() {
    for bad in [
        "",
        "soon",
        "-1",
        "1e3",
        "inf",
        ".5",
        "5.",
        "1.2.3",
        "0.0000000001",
    ] {
        let error = client_error(&format!("tcp:h:1:timeout={bad}"));
        assert_eq!(error.field(), Some("timeout"));
        assert_eq!(
            error.problem(),
            format!("field timeout: \"{bad}\" is not a number of seconds (such as 30 or 2.5)")
        );
    }
}

#[test]
fn a_bind_address_is_an_ip_address() {
    let error = client_error("tcp:h:1:bindAddress=localhost");
    assert_eq!(error.field(), Some("bindAddress"));
    assert_eq!(
        error.problem(),
        r#"field bindAddress: "localhost" is not an IP address"#
    );
}

#[test]
fn a_tcp_client_rejects_unknown_and_extra_fields() {
    let error = client_error("tcp:h:1:foo=bar");
    assert_eq!(error.field(), Some("foo"));
    assert_eq!(
        error.problem(),
        r#"unknown field "foo" (a tcp client knows host, port, timeout, bindAddress)"#
    );
    assert_eq!(
        client_error("tcp:h:1:2").problem(),
        r#"too many positional fields: "2" (a tcp client takes host, then port by position)"#
    );
    assert_eq!(
        client_error("tcp:h:1:timeout=1:timeout=2").field(),
        Some("timeout")
    );
}

// Unix clients.

#[test]
fn a_unix_client_takes_a_path_by_position_or_keyword() {
    let expected = ClientDescription::Unix {
        address: unix_file("/run/app.sock"),
        timeout: DEFAULT_TIMEOUT,
        lockfile: false,
    };
    assert_eq!(client("unix:/run/app.sock"), expected);
    assert_eq!(client("unix:path=/run/app.sock"), expected);
}

#[test]
fn a_unix_client_takes_a_timeout_and_a_lockfile_check() {
    assert_eq!(
        client("unix:path=/run/app.sock:timeout=9:lockfile=1"),
        ClientDescription::Unix {
            address: unix_file("/run/app.sock"),
            timeout: Duration::from_secs(9),
            lockfile: true,
        }
    );
}

#[test]
fn a_unix_client_names_its_path_field_path() {
    assert_eq!(client_error("unix:address=/s").field(), Some("address"));
    assert_eq!(client_error("unix:").problem(), "field path: empty path");
    assert_eq!(
        client_error("unix:timeout=1").problem(),
        "missing field path"
    );
}

// TLS clients.

#[test]
fn a_tls_client_checks_the_host_name_against_the_platform_roots_by_default() {
    assert_eq!(
        client("tls:example.com:443"),
        ClientDescription::Tls {
            host: "example.com".into(),
            port: 443,
            timeout: DEFAULT_TIMEOUT,
            bind_address: None,
            hostname: "example.com".into(),
            trust_roots: None,
            certificate: None,
            private_key: None,
        }
    );
}

#[test]
fn a_tls_client_takes_all_its_fields() {
    assert_eq!(
        client(
            "tls:host=10.0.0.1:port=8443:timeout=1.25:bindAddress=10.0.0.2:hostname=db.internal\
             :trustRoots=ca.pem:certificate=client.pem:privateKey=client.key"
        ),
        ClientDescription::Tls {
            host: "10.0.0.1".into(),
            port: 8443,
            timeout: Duration::from_millis(1250),
            bind_address: Some("10.0.0.2".parse().unwrap()),
            hostname: "db.internal".into(),
            trust_roots: Some("ca.pem".into()),
            certificate: Some("client.pem".into()),
            private_key: Some("client.key".into()),
        }
    );
}

#[test]
fn a_client_certificate_without_a_private_key_holds_both() {
    let ClientDescription::Tls {
        certificate,
        private_key,
        ..
    } = client("tls:h:1:certificate=both.pem")
    else {
        panic!("not a tls client");
    };
    assert_eq!(certificate, Some("both.pem".into()));
    assert_eq!(private_key, Some("both.pem".into()));
}

#[test]
fn a_client_private_key_needs_a_certificate() {
    let error = client_error("tls:h:1:privateKey=k.pem");
    assert_eq!(error.field(), Some("privateKey"));
    assert_eq!(
        error.problem(),
        "field privateKey: a private key needs a certificate"
    );
}

#[test]
fn a_tls_client_rejects_twisted_ssl_fields_it_does_not_support() {
    let error = client_error("ssl:h:1:caCertsDir=/etc/ssl/certs");
    assert_eq!(error.field(), Some("caCertsDir"));
    assert!(error
        .problem()
        .starts_with(r#"unknown field "caCertsDir" (a tls client knows "#));
    assert_eq!(
        client_error("tls:h:1:hostname=").problem(),
        r#"field hostname: "" is not a host name"#
    );
}

// Errors.

#[test]
fn an_endpoint_error_is_an_invalid_input_io_error() {
    let error = server_error("tcp:80x");
    let message = error.to_string();
    let io_error: io::Error = error.into();
    assert_eq!(io_error.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(io_error.to_string(), message);
}

// Writing back.

#[test]
fn display_writes_the_shortest_endpoint_string() {
    assert_eq!(server("TCP:port=8007:backlog=50").to_string(), "tcp:8007");
    assert_eq!(
        server(r"tcp:80:interface=[::1]").to_string(),
        r"tcp:80:interface=\:\:1"
    );
    assert_eq!(
        server("unix:address=/s:mode=666:lockfile=1").to_string(),
        "unix:/s"
    );
    assert_eq!(
        server("unix:/s:mode=0o600:lockfile=0").to_string(),
        "unix:/s:mode=600:lockfile=0"
    );
    assert_eq!(
        server("ssl:443:privateKey=k.pem:certKey=k.pem").to_string(),
        "tls:443:privateKey=k.pem"
    );
    assert_eq!(
        client("tcp:host=[::1]:port=80:timeout=30.0").to_string(),
        r"tcp:\:\:1:80"
    );
    assert_eq!(
        client("tcp:h:80:timeout=0.50").to_string(),
        "tcp:h:80:timeout=0.5"
    );
    assert_eq!(client("unix:path=/a=b").to_string(), r"unix:/a\=b");
    assert_eq!(
        client("tls:h:1:hostname=h:certificate=c.pem:privateKey=c.pem").to_string(),
        "tls:h:1:certificate=c.pem"
    );
}

#[test]
fn a_relative_unix_path_starting_with_at_is_written_so_it_stays_a_file() {
    let description = ServerDescription::Unix {
        address: unix_file("@not-abstract"),
        mode: DEFAULT_UNIX_MODE,
        backlog: DEFAULT_BACKLOG,
        lockfile: true,
    };
    assert_eq!(description.to_string(), "unix:./@not-abstract");
    let ServerDescription::Unix { address, .. } = server(&description.to_string()) else {
        panic!("not a unix server");
    };
    assert_eq!(address, unix_file("./@not-abstract"));
}

#[test]
fn parsing_what_display_writes_gives_the_same_description() {
    let servers = [
        "tcp:8007",
        "tcp:0:interface=127.0.0.1:backlog=1",
        r"tcp:8007:interface=\:\:1:backlog=4096",
        r"unix:/tmp/odd\:name\=x\\y:mode=0:backlog=3:lockfile=0",
        "unix:@abstract:mode=600",
        r"tls:443:privateKey=/etc/k\:ey.pem:certKey=/etc/cert.pem:interface=[::]",
        "ssl:443:privateKey=both.pem",
    ];
    for text in servers {
        let parsed = server(text);
        assert_eq!(server(&parsed.to_string()), parsed, "{text} -> {parsed}");
        assert_eq!(
            parsed.to_string().parse::<ServerDescription>().unwrap(),
            parsed
        );
    }
    let clients = [
        "tcp:example.com:80",
        r"tcp:\:\:1:8007:timeout=0.001:bindAddress=\:\:1",
        "tcp:host=a=b:port=1:timeout=123456.789",
        "unix:/run/app.sock:timeout=9:lockfile=1",
        r"unix:path=@x\:y",
        "tls:example.com:443",
        "tls:10.0.0.1:8443:timeout=1.25:bindAddress=10.0.0.2:hostname=db.internal\
         :trustRoots=ca.pem:certificate=client.pem:privateKey=client.key",
        "tls:h:1:certificate=both.pem",
    ];
    for text in clients {
        let parsed = client(text);
        assert_eq!(client(&parsed.to_string()), parsed, "{text} -> {parsed}");
        assert_eq!(
            parsed.to_string().parse::<ClientDescription>().unwrap(),
            parsed
        );
    }
}

// Plain addresses or endpoint strings.

#[test]
fn a_server_takes_an_ip_socket_address_or_an_endpoint_string() {
    assert_eq!(
        parse_server_or_addr("127.0.0.1:8007").unwrap(),
        tcp_server("127.0.0.1", 8007, 50)
    );
    assert_eq!(
        parse_server_or_addr("[::1]:8007").unwrap(),
        tcp_server("::1", 8007, 50)
    );
    assert_eq!(
        parse_server_or_addr("tcp:8007").unwrap(),
        tcp_server("0.0.0.0", 8007, 50)
    );
    assert_eq!(parse_server_or_addr("unix:/s").unwrap(), server("unix:/s"));
}

#[test]
fn a_server_does_not_take_a_host_name() {
    let error = parse_server_or_addr("localhost:8007").unwrap_err();
    assert_eq!(
        error.problem(),
        r#"unknown endpoint type "localhost" (tcp, unix, tls or ssl), and not an address such as 127.0.0.1:8007"#
    );
    assert_eq!(
        parse_server_or_addr("8007").unwrap_err().problem(),
        r#"unknown endpoint type "8007" (tcp, unix, tls or ssl), and not an address such as 127.0.0.1:8007"#
    );
    assert_eq!(
        parse_server_or_addr("tcp:80x").unwrap_err().field(),
        Some("port")
    );
}

#[test]
fn a_client_takes_host_and_port_or_an_endpoint_string() {
    assert_eq!(
        parse_client_or_addr("127.0.0.1:8007").unwrap(),
        tcp_client("127.0.0.1", 8007)
    );
    assert_eq!(
        parse_client_or_addr("[::1]:8007").unwrap(),
        tcp_client("::1", 8007)
    );
    assert_eq!(
        parse_client_or_addr("localhost:8007").unwrap(),
        tcp_client("localhost", 8007)
    );
    assert_eq!(
        parse_client_or_addr("tcp:localhost:8007").unwrap(),
        tcp_client("localhost", 8007)
    );
    assert_eq!(parse_client_or_addr("unix:/s").unwrap(), client("unix:/s"));
    assert_eq!(
        parse_client_or_addr("TLS:example.com:443").unwrap(),
        client("tls:example.com:443")
    );
}

#[test]
fn a_client_address_that_starts_with_an_endpoint_type_is_an_endpoint_string() {
    assert_eq!(
        parse_client_or_addr("tcp:8007").unwrap_err().problem(),
        "missing field port"
    );
    assert_eq!(
        parse_client_or_addr("unix:8007").unwrap(),
        client("unix:8007")
    );
}

#[test]
fn a_client_address_needs_a_port_to_connect_to() {
    let error = parse_client_or_addr("localhost:0").unwrap_err();
    assert_eq!(error.field(), Some("port"));
    assert_eq!(
        error.problem(),
        r#"field port: "0" is not a port number to connect to (1-65535)"#
    );
    assert_eq!(
        parse_client_or_addr("127.0.0.1:0").unwrap_err().problem(),
        r#"field port: "0" is not a port number to connect to (1-65535)"#
    );
    assert_eq!(
        parse_client_or_addr("localhost:99999")
            .unwrap_err()
            .problem(),
        r#"field port: "99999" is not a port number to connect to (1-65535)"#
    );
    assert_eq!(
        parse_client_or_addr("localhost").unwrap_err().problem(),
        r#"unknown endpoint type "localhost" (tcp, unix, tls or ssl), and not an address such as localhost:8007"#
    );
}
