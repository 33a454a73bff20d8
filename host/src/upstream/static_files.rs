//! The built-in static-file upstream (`static = "www"`): answers GET and HEAD
//! from a folder in the pipeline's upstream phase. Paths are percent-decoded
//! and confined to the root: `..` segments and symlinks leading outside it
//! are 404. Files stream from disk; directories serve their `index.html`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio_util::io::ReaderStream;

use crate::body::{empty_body, ProxyBody};
use crate::error::{status_response, ProxyError};

/// A folder served as an upstream.
#[derive(Debug, Clone)]
pub struct StaticRoot {
    upstream: String,
    root: PathBuf,
}

/// What a request path names under the root.
enum Resolved {
    File(PathBuf),
    /// A directory asked for without its trailing slash.
    DirectoryWithoutSlash,
    NotFound,
    Forbidden,
}

impl StaticRoot {
    pub fn new(upstream: &str, root: &Path) -> Self {
        StaticRoot {
            upstream: upstream.to_string(),
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Answer `method path?query` from the folder.
    pub async fn serve(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        if method != Method::GET && method != Method::HEAD {
            let mut resp = status_response(StatusCode::METHOD_NOT_ALLOWED);
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Ok(resp);
        }
        let file = match self.resolve(path).await? {
            Resolved::File(file) => file,
            Resolved::NotFound => return Ok(status_response(StatusCode::NOT_FOUND)),
            Resolved::Forbidden => return Ok(status_response(StatusCode::FORBIDDEN)),
            Resolved::DirectoryWithoutSlash => {
                let location = match query {
                    Some(q) => format!("{path}/?{q}"),
                    None => format!("{path}/"),
                };
                let mut resp = status_response(StatusCode::MOVED_PERMANENTLY);
                if let Ok(location) = HeaderValue::from_str(&location) {
                    resp.headers_mut().insert(header::LOCATION, location);
                }
                return Ok(resp);
            }
        };
        self.file_response(method, &file).await
    }

    async fn resolve(&self, path: &str) -> Result<Resolved, ProxyError> {
        let Some(relative) = relative_path(path) else {
            return Ok(Resolved::NotFound);
        };
        let root = tokio::fs::canonicalize(&self.root)
            .await
            .map_err(|e| self.io_error(&self.root, e))?;
        let (real, meta) = match self.locate(&root, &root.join(&relative)).await? {
            Ok(found) => found,
            Err(answer) => return Ok(answer),
        };
        if meta.is_file() {
            return Ok(Resolved::File(real));
        }
        if !meta.is_dir() {
            return Ok(Resolved::NotFound);
        }
        if !path.ends_with('/') {
            return Ok(Resolved::DirectoryWithoutSlash);
        }
        match self.locate(&root, &real.join("index.html")).await? {
            Ok((index, meta)) if meta.is_file() => Ok(Resolved::File(index)),
            Ok(_) => Ok(Resolved::NotFound),
            Err(answer) => Ok(answer),
        }
    }

    /// The real path (symlinks followed) and metadata of `candidate` when it
    /// exists inside `root`; otherwise the answer to give instead.
    async fn locate(
        &self,
        root: &Path,
        candidate: &Path,
    ) -> Result<Result<(PathBuf, std::fs::Metadata), Resolved>, ProxyError> {
        let real = match tokio::fs::canonicalize(candidate).await {
            Ok(real) if real.starts_with(root) => real,
            Ok(_) => return Ok(Err(Resolved::NotFound)),
            Err(e) => return self.lookup_failure(candidate, e).map(Err),
        };
        match tokio::fs::metadata(&real).await {
            Ok(meta) => Ok(Ok((real, meta))),
            Err(e) => self.lookup_failure(&real, e).map(Err),
        }
    }

    /// Map a lookup error: absent -> 404, not readable -> 403, else 500.
    fn lookup_failure(&self, path: &Path, e: std::io::Error) -> Result<Resolved, ProxyError> {
        // ENAMETOOLONG and ELOOP have no stable ErrorKind yet.
        const ENAMETOOLONG: i32 = 36;
        const ELOOP: i32 = 40;
        match e.kind() {
            ErrorKind::NotFound | ErrorKind::NotADirectory => Ok(Resolved::NotFound),
            ErrorKind::PermissionDenied => Ok(Resolved::Forbidden),
            _ if matches!(e.raw_os_error(), Some(ENAMETOOLONG | ELOOP)) => Ok(Resolved::NotFound),
            _ => Err(self.io_error(path, e)),
        }
    }

    fn io_error(&self, path: &Path, source: std::io::Error) -> ProxyError {
        ProxyError::StaticFile {
            upstream: self.upstream.clone(),
            path: path.to_path_buf(),
            source,
        }
    }

    async fn file_response(
        &self,
        method: &Method,
        path: &Path,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let file = match tokio::fs::File::open(path).await {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                return Ok(status_response(StatusCode::FORBIDDEN))
            }
            Err(e) => return Err(self.io_error(path, e)),
        };
        let meta = file.metadata().await.map_err(|e| self.io_error(path, e))?;
        let content_type = mime_guess::from_path(path).first_or_octet_stream();

        let body = if method == Method::HEAD {
            empty_body()
        } else {
            let frames = ReaderStream::new(file).map_ok(Frame::data);
            BodyExt::boxed(BodyExt::map_err(StreamBody::new(frames), Into::into))
        };
        let mut resp = Response::new(body);
        let headers = resp.headers_mut();
        if let Ok(value) = HeaderValue::from_str(content_type.essence_str()) {
            headers.insert(header::CONTENT_TYPE, value);
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
        if let Ok(modified) = meta.modified() {
            if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
                headers.insert(header::LAST_MODIFIED, value);
            }
        }
        Ok(resp)
    }
}

/// The percent-decoded path as a relative path of plain segments, or `None`
/// when it tries to leave the root or is not valid UTF-8.
fn relative_path(path: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    let mut relative = PathBuf::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => continue,
            ".." => return None,
            s if s.contains(['\\', '\0']) => return None,
            s => relative.push(s),
        }
    }
    Some(relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Site {
        dir: PathBuf,
    }

    impl Site {
        fn new(tag: &str) -> Site {
            let dir = std::env::temp_dir().join(format!(
                "tailgate-static-{tag}-{}-{}",
                std::process::id(),
                rand::random::<u32>()
            ));
            let www = dir.join("www");
            std::fs::create_dir_all(www.join("docs")).expect("mkdir");
            std::fs::write(www.join("index.html"), "<h1>home</h1>").expect("write");
            std::fs::write(www.join("docs/index.html"), "<h1>docs</h1>").expect("write");
            std::fs::write(www.join("style.css"), "body{}").expect("write");
            std::fs::write(www.join("a b.txt"), "spaced").expect("write");
            std::fs::write(dir.join("secret.txt"), "top secret").expect("write");
            std::os::unix::fs::symlink(dir.join("secret.txt"), www.join("escape.txt"))
                .expect("symlink");
            std::os::unix::fs::symlink(www.join("style.css"), www.join("inside.css"))
                .expect("symlink");
            Site { dir }
        }

        fn root(&self) -> StaticRoot {
            StaticRoot::new("site", &self.dir.join("www"))
        }
    }

    impl Drop for Site {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn get(root: &StaticRoot, path: &str) -> (StatusCode, http::HeaderMap, String) {
        get_method(root, Method::GET, path).await
    }

    async fn get_method(
        root: &StaticRoot,
        method: Method,
        path: &str,
    ) -> (StatusCode, http::HeaderMap, String) {
        let resp = root.serve(&method, path, None).await.expect("served");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn serves_files_with_type_length_and_date() {
        let site = Site::new("files");
        let (status, headers, body) = get(&site.root(), "/style.css").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "body{}");
        assert_eq!(headers["content-type"], "text/css");
        assert_eq!(headers["content-length"], "6");
        assert!(headers.contains_key("last-modified"));
        let (status, _, body) = get(&site.root(), "/a%20b.txt").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "spaced"));
    }

    #[tokio::test]
    async fn directories_serve_index_html() {
        let site = Site::new("index");
        let (status, headers, body) = get(&site.root(), "/").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "<h1>home</h1>"));
        assert_eq!(headers["content-type"], "text/html");
        let (status, _, body) = get(&site.root(), "/docs/").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "<h1>docs</h1>"));
        let (status, headers, _) = get(&site.root(), "/docs").await;
        assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(headers["location"], "/docs/");
    }

    #[tokio::test]
    async fn traversal_attempts_are_404() {
        let site = Site::new("traversal");
        for path in [
            "/../secret.txt",
            "/docs/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E%2Fsecret.txt",
            "/..%2fsecret.txt",
            "/docs/%2e%2e/%2e%2e/secret.txt",
            "/..\\secret.txt",
            "/escape.txt",
            "/missing.txt",
            "/%ff",
        ] {
            let (status, _, body) = get(&site.root(), path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert!(!body.contains("top secret"), "{path}");
        }
        // A symlink that stays inside the root is fine.
        let (status, _, body) = get(&site.root(), "/inside.css").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "body{}"));
    }

    #[tokio::test]
    async fn head_has_length_but_no_body_and_other_methods_are_405() {
        let site = Site::new("methods");
        let (status, headers, body) = get_method(&site.root(), Method::HEAD, "/style.css").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-length"], "6");
        assert_eq!(body, "");
        let (status, headers, _) = get_method(&site.root(), Method::POST, "/style.css").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers["allow"], "GET, HEAD");
    }
}
