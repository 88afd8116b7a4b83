//! [`StaticFiles`]: a folder served over HTTP, Twisted's `static.File`.

use std::fs::{File, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, ALLOW, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE,
    IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, LOCATION, RANGE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use twill::defer::Deferred;

use super::body::Body;
use super::range::{self, Ranged};
use super::{date, Handler};

/// Serves the files under a folder: `GET` and `HEAD`, with
/// `Last-Modified` and `ETag`, `304 Not Modified` for `If-None-Match` and
/// `If-Modified-Since`, single byte ranges (`Range`, `If-Range`, `206`,
/// `416`), and bodies sent with
/// [`Transport::send_file`](twill::Transport::send_file).
///
/// - A request path is percent-decoded and split on `/`; a segment that
///   is `..`, or that decodes to one holding `/`, `\` or NUL, gets `404`,
///   as does anything that resolves (through symbolic links too) outside
///   the folder.
/// - A folder is answered by its `index.html` (a path to it without the
///   final `/` is redirected there, so relative links work); there are no
///   listings.
/// - Other methods get `405` with `Allow: GET, HEAD`.
/// - Several ranges in one request are answered with the whole file (RFC
///   9110 lets a server ignore `Range`); no `multipart/byteranges`.
/// - Opening a file and reading its metadata are blocking calls on the
///   reactor's thread, as in Twisted; the bytes themselves never are.
///   Only regular files are served: a FIFO or a device, which could
///   block that thread, gets `404`.
///
/// ```no_run
/// use twill_protocols::http::{HttpServer, StaticFiles};
///
/// let reactor = twill::Reactor::new()?;
/// reactor.listen_tcp("127.0.0.1:8080", HttpServer::new(StaticFiles::new("public")?))?;
/// reactor.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct StaticFiles {
    root: PathBuf,
}

impl StaticFiles {
    /// Serves the folder `root`.
    ///
    /// # Errors
    ///
    /// If `root` does not exist or is not a folder.
    pub fn new(root: impl AsRef<Path>) -> io::Result<StaticFiles> {
        let root = root.as_ref().canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a folder", root.display()),
            ));
        }
        Ok(StaticFiles { root })
    }

    /// The answer to `request`, for the file its path names.
    pub fn serve<B>(&self, request: &Request<B>) -> Response<Body> {
        self.serve_path(request, request.uri().path())
    }

    /// The answer to `request` for the file `path` names under the folder:
    /// for a folder mounted under a prefix, pass the path without it.
    ///
    /// ```
    /// use http::{Request, StatusCode};
    /// use twill_protocols::http::StaticFiles;
    ///
    /// let folder = std::env::temp_dir().join(format!("static-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&folder)?;
    /// std::fs::write(folder.join("hello.txt"), "hello")?;
    /// let files = StaticFiles::new(&folder)?;
    ///
    /// let request = Request::get("/assets/hello.txt").body(())?;
    /// let path = request.uri().path().strip_prefix("/assets").unwrap();
    /// let response = files.serve_path(&request, path);
    /// assert_eq!(response.status(), StatusCode::OK);
    /// assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
    /// assert_eq!(response.body().len(), Some(5));
    ///
    /// let escape = files.serve_path(&request, "/../etc/passwd");
    /// assert_eq!(escape.status(), StatusCode::NOT_FOUND);
    /// std::fs::remove_dir_all(&folder)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn serve_path<B>(&self, request: &Request<B>, path: &str) -> Response<Body> {
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            let mut response = status_only(StatusCode::METHOD_NOT_ALLOWED);
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let Some(mut file_path) = self.resolve(path) else {
            return status_only(StatusCode::NOT_FOUND);
        };
        if file_path.is_dir() {
            if !path.ends_with('/') {
                // One leading `/`: `//name/` would be read by a browser as
                // a link to the host `name` (an open redirect).
                let mut location = format!("/{}/", request.uri().path().trim_start_matches('/'));
                if let Some(query) = request.uri().query() {
                    location.push('?');
                    location.push_str(query);
                }
                let mut response = status_only(StatusCode::MOVED_PERMANENTLY);
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(LOCATION, value);
                }
                return response;
            }
            // The index may be a link too: it must stay inside as well.
            match self.inside(file_path.join("index.html")) {
                Some(index) => file_path = index,
                None => return status_only(StatusCode::NOT_FOUND),
            }
        }
        let (file, meta) = match open(&file_path) {
            Ok(opened) => opened,
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                return status_only(StatusCode::FORBIDDEN)
            }
            Err(_) => return status_only(StatusCode::NOT_FOUND),
        };
        answer(request.headers(), file, &meta, content_type(&file_path))
    }

    /// The file `path` names, if it is inside the folder.
    fn resolve(&self, path: &str) -> Option<PathBuf> {
        let mut resolved = self.root.clone();
        for segment in path.split('/') {
            let segment = percent_decode(segment)?;
            match segment.as_str() {
                "" | "." => {}
                ".." => return None,
                s if s.contains(['/', '\\', '\0']) => return None,
                s => resolved.push(s),
            }
        }
        self.inside(resolved)
    }

    /// `path` with its symbolic links resolved, if that is inside the
    /// folder: links may point anywhere.
    fn inside(&self, path: PathBuf) -> Option<PathBuf> {
        let real = path.canonicalize().ok()?;
        real.starts_with(&self.root).then_some(real)
    }
}

impl Handler for StaticFiles {
    fn handle(&self, request: Request<Bytes>) -> Deferred<Response<Body>> {
        twill::defer::succeed(self.serve(&request))
    }
}

fn open(path: &Path) -> io::Result<(File, Metadata)> {
    // Opening a FIFO (or a device) for reading can block the reactor's
    // thread until a writer comes: only regular files are opened. (The
    // check after opening stays, for a file replaced in between.)
    if !std::fs::metadata(path)?.is_file() {
        return Err(io::ErrorKind::NotFound.into());
    }
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::ErrorKind::NotFound.into());
    }
    Ok((file, meta))
}

/// The answer for an open file, after the request's conditions.
fn answer(
    headers: &HeaderMap,
    file: File,
    meta: &Metadata,
    content_type: &'static str,
) -> Response<Body> {
    let len = meta.len();
    let modified = meta
        .modified()
        .ok()
        .map(|t| whole_seconds(t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)));
    let etag = format!("W/\"{len:x}-{:x}\"", modified.map_or(0, |m| m.as_secs()));
    let last_modified = modified.map(|m| date::format(UNIX_EPOCH + m));

    let mut response = Response::new(Body::Empty);
    let fields = response.headers_mut();
    fields.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        fields.insert(ETAG, value);
    }
    if let Some(Ok(value)) = last_modified.as_deref().map(HeaderValue::from_str) {
        fields.insert(LAST_MODIFIED, value);
    }
    fields.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));

    // RFC 9110 §13.2.2: If-None-Match, else If-Modified-Since.
    let not_modified = match text(headers, IF_NONE_MATCH) {
        Some(tags) => tags
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || weak_eq(tag, &etag)),
        None => match (
            text(headers, IF_MODIFIED_SINCE).and_then(date::parse),
            modified,
        ) {
            (Some(since), Some(modified)) => UNIX_EPOCH + modified <= since,
            _ => false,
        },
    };
    if not_modified {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }

    let range_honoured = match text(headers, IF_RANGE) {
        None => true,
        // Only a strong validator can make a range safe; this server's
        // tags are weak, so a tag never matches, and a date must be
        // exactly the file's.
        Some(condition) => last_modified.as_deref() == Some(condition.trim()),
    };
    let ranged = match text(headers, RANGE) {
        Some(field) if range_honoured => range::parse(field, len),
        _ => Ranged::Whole,
    };
    match ranged {
        Ranged::Whole => {
            *response.body_mut() = Body::File {
                file,
                range: 0..len,
            };
        }
        Ranged::Part(part) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let value = format!("bytes {}-{}/{len}", part.start, part.end - 1);
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(CONTENT_RANGE, value);
            }
            *response.body_mut() = Body::File { file, range: part };
        }
        Ranged::Unsatisfiable => {
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(CONTENT_RANGE, value);
            }
            response.headers_mut().remove(CONTENT_TYPE);
        }
    }
    response
}

fn status_only(status: StatusCode) -> Response<Body> {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.headers_mut().remove(CONTENT_LENGTH);
    response
}

fn text(headers: &HeaderMap, name: http::header::HeaderName) -> Option<&str> {
    headers.get(name)?.to_str().ok()
}

/// RFC 9110 §8.8.3.2's weak comparison: the tags match ignoring `W/`.
fn weak_eq(a: &str, b: &str) -> bool {
    a.trim_start_matches("W/") == b.trim_start_matches("W/")
}

fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// `%XX` escapes decoded; `None` for a bad escape or text that is not
/// UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    if !segment.contains('%') {
        return Some(segment.to_string());
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The media type for a file name's extension; `application/octet-stream`
/// for the rest.
fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("md") => "text/markdown; charset=utf-8",
        Some("csv") => "text/csv; charset=utf-8",
        Some("xml") => "application/xml",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        Some("pdf") => "application/pdf",
        Some("zip") => "application/zip",
        Some("gz") => "application/gzip",
        Some("mp4") => "video/mp4",
        Some("webm") => "video/webm",
        Some("mp3") => "audio/mpeg",
        Some("woff") => "font/woff",
        Some("woff2") => "font/woff2",
        Some("ttf") => "font/ttf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("%2e%2E").as_deref(), Some(".."));
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
