//! [`accept`] and [`WebSocketAcceptor`]: the server's side of the opening
//! handshake (RFC 6455 section 4.2), as the answer of an
//! [`HttpServer`](crate::http::HttpServer) handler.

use http::header::{
    CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};

use super::config::WebSocketConfig;
use super::connection::WebSocketProtocol;
use super::handle::WebSocketHandler;
use super::handshake::{check_request, HandshakeError, WEBSOCKET_VERSION};
use super::Role;
use crate::http::{Body, Upgrade};

/// Answers a WebSocket upgrade request with the default options and no
/// subprotocol: shorthand for
/// [`WebSocketAcceptor::new().accept(request, handler)`](WebSocketAcceptor::accept).
pub fn accept<B>(request: &Request<B>, handler: impl WebSocketHandler) -> Response<Body> {
    WebSocketAcceptor::new().accept(request, handler)
}

/// The server's side of the opening handshake, for an
/// [`HttpServer`](crate::http::HttpServer) handler: Autobahn's
/// `WebSocketServerProtocol.onConnect`, Netty's
/// `WebSocketServerHandshaker13`. [`accept`](Self::accept) checks a
/// request and returns the response to give the server:
///
/// - a good handshake: `101 Switching Protocols` with
///   `Sec-WebSocket-Accept` (and the subprotocol picked), whose
///   [`Body::Upgrade`] hands the connection to a [`WebSocketProtocol`]
///   calling `handler` (its `on_open` runs once the 101 is written);
/// - a `Sec-WebSocket-Version` other than 13: `426 Upgrade Required` with
///   `Sec-WebSocket-Version: 13`;
/// - anything else (not a `GET`, not HTTP/1.1, no `Upgrade: websocket`,
///   no `Connection: Upgrade`, a bad key): `400 Bad Request` saying why.
///   No upgrade happens and `handler` is dropped.
///
/// Subprotocols (`Sec-WebSocket-Protocol`): the first of the acceptor's
/// [`protocols`](Self::protocols) that the client offered is picked
/// (the server's preference), or none; the connection then runs without
/// one ([`WebSocket::protocol`](super::WebSocket::protocol) is `None`), and
/// the client decides whether that will do. Extensions are never
/// negotiated.
///
/// # Examples
///
/// An echo server at `/echo`, with HTTP for everything else:
///
/// ```no_run
/// use http::{Request, Response, StatusCode};
/// use twill::Bytes;
/// use twill_protocols::http::{Body, HttpServer};
/// use twill_protocols::websocket::{Message, WebSocket, WebSocketAcceptor, WebSocketConfig};
///
/// let reactor = twill::Reactor::new()?;
/// let acceptor = WebSocketAcceptor::new()
///     .config(WebSocketConfig::builder().max_message_size(64 * 1024).build().unwrap())
///     .protocols(["echo.v1"]);
/// let server = HttpServer::new(move |request: Request<Bytes>| {
///     let response = match request.uri().path() {
///         "/echo" => acceptor.accept(&request, |ws: &WebSocket, message: Message| {
///             let _ = ws.send(message);
///         }),
///         _ => {
///             let mut response = Response::new(Body::from("not here\n"));
///             *response.status_mut() = StatusCode::NOT_FOUND;
///             response
///         }
///     };
///     twill::defer::succeed(response)
/// });
/// reactor.listen_tcp("127.0.0.1:8080", server)?;
/// reactor.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct WebSocketAcceptor {
    config: WebSocketConfig,
    protocols: Vec<String>,
}

impl WebSocketAcceptor {
    /// An acceptor with the default options and no subprotocols.
    pub fn new() -> WebSocketAcceptor {
        WebSocketAcceptor::default()
    }

    /// The connections' options (limits, timers).
    pub fn config(mut self, config: WebSocketConfig) -> Self {
        self.config = config;
        self
    }

    /// The subprotocols this server speaks, preferred first.
    pub fn protocols<I>(mut self, protocols: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// The response to `request`: `101` with the upgrade to a WebSocket
    /// connection calling `handler`, or the refusal; see the type's docs.
    pub fn accept<B>(
        &self,
        request: &Request<B>,
        handler: impl WebSocketHandler,
    ) -> Response<Body> {
        let accept = match self.check(request) {
            Ok(accept) => accept,
            Err((status, why)) => return refuse(status, &why),
        };
        let protocol = self.pick_protocol(request);
        let config = self.config.clone();
        let picked = protocol.clone();
        let upgrade = Upgrade::new(move |transport| {
            let mut protocol =
                WebSocketProtocol::new(Role::Server, config, handler).with_subprotocol(picked);
            twill::Protocol::connection_made(&mut protocol, transport);
            Box::new(protocol)
        });
        let mut response = Response::new(Body::Upgrade(upgrade));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(
            SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
        );
        if let Some(protocol) = protocol {
            if let Ok(value) = HeaderValue::from_str(&protocol) {
                headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
            }
        }
        response
    }

    /// The `Sec-WebSocket-Accept` value, or the status and reason of the
    /// refusal to send.
    fn check<B>(&self, request: &Request<B>) -> Result<String, (StatusCode, String)> {
        if request.method() != Method::GET {
            return Err((
                StatusCode::BAD_REQUEST,
                "a WebSocket handshake is a GET request".into(),
            ));
        }
        if request.version() < Version::HTTP_11 {
            return Err((
                StatusCode::BAD_REQUEST,
                "a WebSocket handshake needs HTTP/1.1".into(),
            ));
        }
        let headers: Vec<(&str, &str)> = request
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
            .collect();
        check_request(&headers).map_err(|err| match err {
            HandshakeError::UnsupportedVersion => (StatusCode::UPGRADE_REQUIRED, err.to_string()),
            other => (StatusCode::BAD_REQUEST, other.to_string()),
        })
    }

    /// The first of this server's subprotocols the client offered.
    fn pick_protocol<B>(&self, request: &Request<B>) -> Option<String> {
        let offered: Vec<&str> = request
            .headers()
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .collect();
        self.protocols
            .iter()
            .find(|protocol| offered.contains(&protocol.as_str()))
            .cloned()
    }
}

/// A refusal with `status`, saying `why` in its body; a 426 names the
/// version this server speaks.
fn refuse(status: StatusCode, why: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(format!("{why}\n")));
    *response.status_mut() = status;
    if status == StatusCode::UPGRADE_REQUIRED {
        response.headers_mut().insert(
            SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static(WEBSOCKET_VERSION),
        );
    }
    response
}
