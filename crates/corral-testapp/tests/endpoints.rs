//! The test app answers as the integration tests expect. (This test also makes
//! `cargo test --workspace` build the binary the other tests run as workers.)

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct App(Child);

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> (App, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let child = Command::new(env!("CARGO_BIN_EXE_corral-testapp"))
        .args(["--port", &port.to_string()])
        .env("CORRAL_WORKER", "7")
        .stdout(Stdio::null())
        .spawn()
        .expect("start the test app");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "test app did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    (App(child), port)
}

fn get(port: u16, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .get(&format!("http://127.0.0.1:{port}{path}"))
        .call()
        .expect("request");
    (
        r.status().as_u16(),
        r.body_mut().read_to_string().expect("body"),
    )
}

#[test]
fn endpoints_answer_as_documented() {
    let (app, port) = start();
    let (status, body) = get(port, "/");
    assert_eq!(status, 200);
    assert_eq!(
        body.trim(),
        format!("{{\"worker\":\"7\",\"pid\":{}}}", app.0.id())
    );
    assert_eq!(get(port, "/health"), (200, "ok\n".to_string()));
    assert_eq!(get(port, "/status/418").0, 418);
    assert_eq!(get(port, "/bytes?n=1024").1.len(), 1024);
    let start = Instant::now();
    assert_eq!(get(port, "/sleep?ms=300").0, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
    let (_, headers) = get(port, "/headers");
    let headers: serde_json::Value = serde_json::from_str(&headers).expect("json");
    assert_eq!(headers["host"], format!("127.0.0.1:{port}"));
}
