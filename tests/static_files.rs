//! A `static = DIR` route (issue 34) through the real binary: files under the directory
//! and never a byte from outside it, validators and 304, one range and 206/416,
//! precompressed siblings by `Accept-Encoding`, HEAD, 405, index.html and no listing; the
//! route's `Cache-Control` (and the hashed names' own), its headers, its answers counted
//! and logged as `static`; a large file whole (the `sendfile` path) and a small one in one
//! write.

mod support;

use support::raw::{Raw, Response};
use support::{testapp_pool, Corral};

/// A file outside the root whose bytes must never be served.
const SECRET: &str = "SECRET-OUTSIDE-THE-ROOT";

fn ask(port: u16, target: &str, fields: &str) -> Response {
    ask_method(port, "GET", target, fields)
}

fn ask_method(port: u16, method: &str, target: &str, fields: &str) -> Response {
    let mut raw = Raw::connect(port);
    raw.send(
        format!(
            "{method} {target} HTTP/1.1\r\nHost: example.com\r\n{fields}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    raw.response(method == "HEAD")
}

struct Site {
    corral: Corral,
    _dirs: tempfile::TempDir,
}

fn start() -> Site {
    let dirs = tempfile::tempdir().expect("dir");
    let root = dirs.path().join("static");
    std::fs::create_dir_all(root.join("docs")).expect("docs");
    std::fs::create_dir_all(root.join("empty")).expect("empty");
    std::fs::write(dirs.path().join("secret.txt"), SECRET).expect("secret");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("big.bin"), &big).expect("big");
    std::fs::write(root.join("app.js"), "console.log('plain');\n").expect("js");
    std::fs::write(root.join("app.js.br"), "BROTLI-BYTES").expect("br");
    std::fs::write(root.join("app.js.gz"), "GZIP-BYTES").expect("gz");
    std::fs::write(root.join("docs").join("index.html"), "<h1>docs</h1>").expect("index");
    std::fs::write(root.join("app.3f2a1b9c4d5e.css"), "body{}").expect("hashed");
    std::os::unix::fs::symlink(dirs.path().join("secret.txt"), root.join("leak.txt"))
        .expect("symlink");
    std::os::unix::fs::symlink("../secret.txt", root.join("up.txt")).expect("symlink");
    std::os::unix::fs::symlink("docs/index.html", root.join("inside.html")).expect("symlink");
    let body = format!(
        "[[routes]]\npath_prefix = \"/static\"\nstatic = {:?}\n\
         cache_control = \"public, max-age=3600\"\n\
         cache_control_hashed = \"public, max-age=31536000, immutable\"\n\
         headers = {{ set = {{ \"X-Frame-Options\" = \"SAMEORIGIN\" }} }}\n\
         [[routes]]\npools = [\"web\"]\n{}",
        root.display().to_string(),
        testapp_pool(1, "")
    );
    let corral = Corral::start(&body, "", 1);
    Site {
        corral,
        _dirs: dirs,
    }
}

#[test]
fn traversal_corpus_never_leaves_the_root() {
    let site = start();
    let port = site.corral.port;
    for target in [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/%2e%2e%2fsecret.txt",
        "/static/..%5csecret.txt",
        "/static/%252e%252e/secret.txt",
        "/static/secret.txt%00.js",
        "/static/leak.txt",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/./../secret.txt",
        "/static/up.txt",
        "/static/..\\secret.txt",
        "/static/%2e%2e%5csecret.txt",
        "/static/%252e%252e%252fsecret.txt",
        "/static/%c0%ae%c0%ae/secret.txt",
        "/static/%00",
        "/static/%2F..%2Fsecret.txt",
        "/static/docs/../../secret.txt",
        "/static/..",
        "/static/%2e%2e",
    ] {
        let r = ask(port, target, "");
        assert!(
            r.status == 400 || r.status == 404,
            "{target}: {} {:?}",
            r.status,
            r.head
        );
        assert!(
            !String::from_utf8_lossy(&r.body).contains(SECRET),
            "{target} leaked the file outside the root"
        );
    }
    // A directory without index.html is not listed.
    assert_eq!(ask(port, "/static/empty/", "").status, 404);
    let index = ask(port, "/static/docs/", "");
    assert_eq!(index.status, 200);
    assert_eq!(index.body, b"<h1>docs</h1>");
    // A symlink that stays under the root is followed.
    assert_eq!(ask(port, "/static/inside.html", "").body, b"<h1>docs</h1>");
}

#[test]
fn validators_ranges_codings_and_methods() {
    let site = start();
    let port = site.corral.port;
    let whole = ask(port, "/static/big.bin", "");
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body.len(), 300_000);
    let expected: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    assert!(
        whole.body == expected,
        "the large file (sendfile) arrived changed"
    );
    let etag = whole.header("etag").expect("etag").to_string();
    assert!(whole.header("last-modified").is_some());

    let again = ask(
        port,
        "/static/big.bin",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!(again.status, 304, "{again:?}");
    assert!(again.body.is_empty());
    let since = whole.header("last-modified").expect("lm").to_string();
    let again = ask(
        port,
        "/static/big.bin",
        &format!("If-Modified-Since: {since}\r\n"),
    );
    assert_eq!(again.status, 304);

    let part = ask(port, "/static/big.bin", "Range: bytes=0-99\r\n");
    assert_eq!(part.status, 206);
    assert_eq!(part.body.len(), 100);
    assert_eq!(part.header("content-range"), Some("bytes 0-99/300000"));
    assert_eq!(part.body[..], whole.body[..100]);
    let tail = ask(port, "/static/big.bin", "Range: bytes=-10\r\n");
    assert_eq!(tail.body[..], whole.body[299_990..]);
    let past = ask(port, "/static/big.bin", "Range: bytes=400000-\r\n");
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), Some("bytes */300000"));

    let br = ask(port, "/static/app.js", "Accept-Encoding: gzip, br\r\n");
    assert_eq!(br.body, b"BROTLI-BYTES");
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(br.header("vary"), Some("Accept-Encoding"));
    assert_eq!(
        br.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let gz = ask(port, "/static/app.js", "Accept-Encoding: gzip\r\n");
    assert_eq!(gz.body, b"GZIP-BYTES");
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let plain = ask(port, "/static/app.js", "");
    assert_eq!(plain.body, b"console.log('plain');\n");
    assert_eq!(plain.header("content-encoding"), None);

    let head = ask_method(port, "HEAD", "/static/big.bin", "");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("300000"));
    let post = ask_method(port, "DELETE", "/static/big.bin", "");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    // Keep-alive: two requests on one connection, the second after a whole static answer.
    let mut raw = Raw::connect(port);
    raw.send(b"GET /static/app.js HTTP/1.1\r\nHost: a\r\n\r\nGET /static/docs/ HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(raw.response(false).body, b"console.log('plain');\n");
    assert_eq!(raw.response(false).body, b"<h1>docs</h1>");
}

#[test]
fn cache_control_headers_and_the_static_label() {
    let site = start();
    let port = site.corral.port;
    let plain = ask(port, "/static/app.js", "");
    assert_eq!(plain.header("cache-control"), Some("public, max-age=3600"));
    assert_eq!(plain.header("x-frame-options"), Some("SAMEORIGIN"));
    let hashed = ask(port, "/static/app.3f2a1b9c4d5e.css", "");
    assert_eq!(hashed.status, 200);
    assert_eq!(
        hashed.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let etag = hashed.header("etag").expect("etag").to_string();
    let again = ask(
        port,
        "/static/app.3f2a1b9c4d5e.css",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!(again.status, 304);
    assert_eq!(
        again.header("cache-control"),
        Some("public, max-age=31536000, immutable"),
        "a 304 carries the Cache-Control a 200 would"
    );
    // The pool route keeps [headers]: no route field on its answers.
    let worker = ask(port, "/", "");
    assert_eq!(worker.header("x-frame-options"), None);
    assert_eq!(worker.header("cache-control"), None);
    assert_eq!(ask(port, "/static/missing.css", "").status, 404);

    // Counted and logged as `static` (pool label and access line), the route named.
    // (Counted once the answer is out: polled.)
    let class = |metrics: &str, c: &str| {
        metric_value(
            metrics,
            &format!("corral_requests_total{{pool=\"static\",status=\"{c}\"}}"),
        )
    };
    support::wait_for(
        "static answers counted as pool=\"static\"",
        std::time::Duration::from_secs(5),
        || {
            let metrics = site.corral.metrics();
            (class(&metrics, "2xx") >= 2.0
                && class(&metrics, "3xx") >= 1.0
                && class(&metrics, "4xx") >= 1.0)
                .then_some(())
        },
    );
    let line = site.corral.wait_log(
        "the access line of a static answer",
        std::time::Duration::from_secs(5),
        |e| e["path"] == "/static/app.3f2a1b9c4d5e.css" && e["status"] == 200,
    );
    assert_eq!(line["pool"], "static", "{line}");
    assert_eq!(line["route"], "/static", "{line}");
    assert_eq!(line["bytes"], 6, "{line}");
}

fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until every file under `dir` was last changed over 2 s ago (its modification and
/// status-change times), so corral keeps the small ones in memory from their next request.
fn wait_settled(dir: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let newest = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.mtime().max(m.ctime()) as f64 + 1.0)
        .fold(0.0, f64::max);
    support::wait_for(
        "the files to settle",
        std::time::Duration::from_secs(10),
        || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs_f64();
            (now > newest + 2.2).then_some(())
        },
    );
}

/// The answer's head without the fields that change from one answer to the next.
fn fixed_fields(r: &Response) -> Vec<&str> {
    r.head
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("date:") && !l.starts_with("x-request-id:")
        })
        .collect()
}

/// Small files answered from memory (after their first request) answer as from disk:
/// validators and 304, ranges and 416, HEAD, the route's fields, keep-alive; and a file
/// rewritten in place (same size, even with its old time put back), replaced by a rename,
/// turned into a symlink out of the root, or deleted is never answered with what was kept.
#[test]
fn small_files_kept_in_memory_answer_alike_and_follow_changes_on_disk() {
    let site = start();
    let port = site.corral.port;
    let root = site._dirs.path().join("static");
    std::fs::write(root.join("small.txt"), "0123456789".repeat(20)).expect("small");
    wait_settled(&root);
    let first = ask(port, "/static/small.txt", "");
    for _ in 0..3 {
        let again = ask(port, "/static/small.txt", "");
        assert_eq!(again.status, 200);
        assert_eq!(again.body, first.body);
        assert_eq!(fixed_fields(&again), fixed_fields(&first));
    }
    assert_eq!(first.header("content-length"), Some("200"));
    assert_eq!(
        first.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(first.header("cache-control"), Some("public, max-age=3600"));
    assert_eq!(first.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(first.header("vary"), Some("Accept-Encoding"));
    let etag = first.header("etag").expect("etag").to_string();
    let since = first.header("last-modified").expect("lm").to_string();
    let inm = ask(
        port,
        "/static/small.txt",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!((inm.status, inm.body.len()), (304, 0), "{inm:?}");
    assert_eq!(inm.header("cache-control"), Some("public, max-age=3600"));
    let ims = ask(
        port,
        "/static/small.txt",
        &format!("If-Modified-Since: {since}\r\n"),
    );
    assert_eq!(ims.status, 304);
    let part = ask(port, "/static/small.txt", "Range: bytes=0-99\r\n");
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some("bytes 0-99/200"));
    assert_eq!(part.body[..], first.body[..100]);
    let other = ask(
        port,
        "/static/small.txt",
        "Range: bytes=0-9\r\nIf-Range: \"other\"\r\n",
    );
    assert_eq!((other.status, other.body.len()), (200, 200));
    let past = ask(port, "/static/small.txt", "Range: bytes=500-\r\n");
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), Some("bytes */200"));
    let head = ask_method(port, "HEAD", "/static/small.txt", "");
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("200"))
    );
    // Precompressed siblings are still looked for on disk.
    let js = ask(port, "/static/app.js", "");
    assert_eq!(js.body, b"console.log('plain');\n");
    let br = ask(port, "/static/app.js", "Accept-Encoding: br\r\n");
    assert_eq!(br.body, b"BROTLI-BYTES");
    // A directory's index, and keep-alive across kept answers.
    let mut raw = Raw::connect(port);
    raw.send(b"GET /static/docs/ HTTP/1.1\r\nHost: a\r\n\r\nGET /static/small.txt HTTP/1.1\r\nHost: a\r\n\r\nGET /static/docs HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(raw.response(false).body, b"<h1>docs</h1>");
    assert_eq!(raw.response(false).body, first.body);
    assert_eq!(raw.response(false).body, b"<h1>docs</h1>");

    // Rewritten in place with bytes of the same size, its time of change put back.
    let old_time = std::fs::metadata(root.join("small.txt"))
        .expect("meta")
        .modified()
        .expect("mtime");
    std::fs::write(root.join("small.txt"), "abcdefghij".repeat(20)).expect("rewrite");
    std::fs::File::options()
        .write(true)
        .open(root.join("small.txt"))
        .and_then(|f| f.set_modified(old_time))
        .expect("old time");
    let rewritten = ask(port, "/static/small.txt", "");
    assert_eq!(
        rewritten.body,
        "abcdefghij".repeat(20).as_bytes(),
        "stale bytes served"
    );

    // Kept again once settled, then replaced by a rename (a deploy's way).
    wait_settled(&root);
    assert_eq!(
        ask(port, "/static/small.txt", "").body,
        "abcdefghij".repeat(20).as_bytes()
    );
    std::fs::write(root.join("next.tmp"), "ABCDEFGHIJ".repeat(20)).expect("next");
    std::fs::rename(root.join("next.tmp"), root.join("small.txt")).expect("rename");
    let replaced = ask(port, "/static/small.txt", "");
    assert_eq!(
        replaced.body,
        "ABCDEFGHIJ".repeat(20).as_bytes(),
        "a replaced file's old bytes served"
    );
    assert_ne!(replaced.header("etag"), Some(etag.as_str()));

    // Kept again, then the name turned into a symlink to a file outside the root.
    wait_settled(&root);
    assert_eq!(ask(port, "/static/small.txt", "").status, 200);
    std::fs::remove_file(root.join("small.txt")).expect("rm");
    std::os::unix::fs::symlink(site._dirs.path().join("secret.txt"), root.join("small.txt"))
        .expect("symlink");
    let out = ask(port, "/static/small.txt", "");
    assert_eq!(out.status, 404, "{out:?}");
    assert!(!String::from_utf8_lossy(&out.body).contains(SECRET));

    // And deleted.
    std::fs::remove_file(root.join("small.txt")).expect("rm");
    assert_eq!(ask(port, "/static/small.txt", "").status, 404);
}
