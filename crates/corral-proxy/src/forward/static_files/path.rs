//! From a request path to a file under a static route's root, never outside it: the
//! path after the prefix is percent-decoded once, and refused (400) when it holds an
//! encoded `/` or `\`, a `%` left after decoding (double encoding), NUL or any control
//! byte, a `\`, or a `.`/`..` segment. The file is then opened beneath the root
//! ([`open`](super::open)), so a symlink that leaves it is not followed either (404).

use std::path::PathBuf;

use percent_encoding::percent_decode_str;

/// The relative path a request for `path` asks for under a route with `prefix`, or
/// `Err` when it is one to refuse. Empty, or ending in `/`, means a directory.
pub(super) fn relative(path: &str, prefix: &str) -> Result<PathBuf, ()> {
    let rest = if prefix == "/" {
        path
    } else {
        path.strip_prefix(prefix).ok_or(())?
    };
    let lower = rest.to_ascii_lowercase();
    if ["%2f", "%5c", "%00", "%25"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return Err(());
    }
    let decoded = percent_decode_str(rest).decode_utf8().map_err(|_| ())?;
    if decoded
        .bytes()
        .any(|b| b.is_ascii_control() || b == b'\\' || b == b'%')
    {
        return Err(());
    }
    let mut out = PathBuf::new();
    for segment in decoded.split('/') {
        match segment {
            "" => {}
            "." | ".." => return Err(()),
            name => out.push(name),
        }
    }
    if decoded.ends_with('/') || out.as_os_str().is_empty() {
        out.push("index.html");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_encoded_tricks_are_refused() {
        for bad in [
            "/static/../etc/passwd",
            "/static/%2e%2e/etc/passwd",
            "/static/%2E%2E/x",
            "/static/a%2fb",
            "/static/..%5cx",
            "/static/%252e%252e/x",
            "/static/a%00.txt",
            "/static/a\\b",
            "/static/./a",
            "/other/a",
        ] {
            assert!(relative(bad, "/static").is_err(), "{bad} was taken");
        }
        assert_eq!(
            relative("/static/css/a%20b.css", "/static"),
            Ok(PathBuf::from("css/a b.css"))
        );
        assert_eq!(
            relative("/static", "/static"),
            Ok(PathBuf::from("index.html"))
        );
        assert_eq!(
            relative("/static/docs/", "/static"),
            Ok(PathBuf::from("docs/index.html"))
        );
        assert_eq!(relative("//a", "/"), Ok(PathBuf::from("a")));
    }
}
