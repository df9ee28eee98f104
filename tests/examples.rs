//! The examples of `examples/` under the real servers people run: each is served through
//! corral, reloaded under load with no failed request, survives a worker killed with SIGKILL,
//! and stops cleanly on SIGTERM with every process gone.

mod support;

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use support::apps::{on_path, start_example, venv_with};
use support::{client, get, group_alive, wait_for, Corral, Load};

const WORKERS: usize = 2;

/// The whole life of one example; `hello` is what its `/` answers in `"hello"`.
fn exercise(mut corral: Corral, hello: &str) {
    let agent = client();
    let (status, body) = get(&agent, &corral.url("/")).expect("GET /");
    assert_eq!(status, 200, "{body}\n{}", corral.logs());
    let answer: Value = serde_json::from_str(&body).expect("a JSON answer");
    assert_eq!(answer["hello"], hello, "{body}");
    assert_eq!(
        answer["client"], "127.0.0.1",
        "the worker sees the client in X-Forwarded-For: {body}"
    );

    // A reload under load: every worker replaced, no request failed.
    let old = corral.ready_pids();
    let load = Load::start(&corral.url("/"), 8, Duration::from_secs(120));
    load.wait_more(50, Duration::from_secs(30));
    corral.signal(Signal::SIGHUP);
    let new = corral.wait_replaced(WORKERS, 2, &old, Duration::from_secs(60));
    load.wait_more(50, Duration::from_secs(30));
    let result = load.stop();
    assert!(
        result.failures.is_empty(),
        "{} of {} failed across the reload: {:?}\n{}",
        result.failures.len(),
        result.ok + result.failures.len(),
        &result.failures[..result.failures.len().min(5)],
        corral.logs()
    );
    println!("{hello}: {} requests across a reload, 0 failed", result.ok);

    // A worker killed outright is replaced, and the pool serves on.
    let victim = new[0];
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).expect("kill a worker");
    let after = wait_for(
        &format!("a replacement for worker {victim}\n{}", corral.logs()),
        Duration::from_secs(60),
        || {
            let pids = corral.ready_pids();
            (pids.len() == WORKERS && !pids.contains(&victim)).then_some(pids)
        },
    );
    // What the killed worker left in its process group (gunicorn's own worker, say) goes too.
    wait_for(
        &format!("worker group {victim} gone: {}", group_members(victim)),
        Duration::from_secs(10),
        || (!group_alive(victim)).then_some(()),
    );
    for _ in 0..10 {
        let (status, body) = get(&agent, &corral.url("/")).expect("GET / after the kill");
        assert_eq!(status, 200, "{body}");
    }

    // SIGTERM: exit 0, and nothing of any worker is left.
    corral.signal(Signal::SIGTERM);
    let exit = corral.wait_exit(Duration::from_secs(60));
    assert!(exit.success(), "{exit:?}\n{}", corral.logs());
    for pid in after {
        wait_for(
            &format!("worker group {pid} gone: {}", group_members(pid)),
            Duration::from_secs(10),
            || (!group_alive(pid)).then_some(()),
        );
    }
}

#[test]
fn flask_under_waitress() {
    let Some(venv) = venv_with("waitress-serve") else {
        return;
    };
    exercise(
        start_example("flask/waitress.toml", Some(&venv), WORKERS),
        "flask",
    );
}

#[test]
fn flask_under_gunicorn_bound_to_fd_3() {
    let Some(venv) = venv_with("gunicorn") else {
        return;
    };
    exercise(
        start_example("flask/gunicorn-fd.toml", Some(&venv), WORKERS),
        "flask",
    );
}

#[test]
fn flask_under_plain_gunicorn_adopting_the_socket_like_under_systemd() {
    let Some(venv) = venv_with("gunicorn") else {
        return;
    };
    exercise(
        start_example("flask/gunicorn-systemd.toml", Some(&venv), WORKERS),
        "flask",
    );
}

#[test]
fn flask_under_granian() {
    let Some(venv) = venv_with("granian") else {
        return;
    };
    exercise(
        start_example("flask/granian.toml", Some(&venv), WORKERS),
        "flask",
    );
}

#[test]
fn flask_preloaded_and_forked_by_corral() {
    let Some(venv) = venv_with("flask") else {
        return;
    };
    exercise(
        start_example("flask/preload.toml", Some(&venv), WORKERS),
        "flask",
    );
}

#[test]
fn django_preloaded_and_forked_by_corral() {
    let Some(venv) = venv_with("django-admin") else {
        return;
    };
    exercise(
        start_example("django/preload.toml", Some(&venv), WORKERS),
        "django",
    );
}

#[test]
fn django_under_gunicorn() {
    let Some(venv) = venv_with("gunicorn") else {
        return;
    };
    exercise(
        start_example("django/gunicorn.toml", Some(&venv), WORKERS),
        "django",
    );
}

#[test]
fn fastapi_under_uvicorn_on_fd_3_with_its_websocket() {
    let Some(venv) = venv_with("uvicorn") else {
        return;
    };
    fastapi_with_its_websocket(start_example("fastapi/uvicorn.toml", Some(&venv), WORKERS));
}

#[test]
fn fastapi_preloaded_and_forked_by_corral_with_its_websocket() {
    let Some(venv) = venv_with("uvicorn") else {
        return;
    };
    fastapi_with_its_websocket(start_example("fastapi/preload.toml", Some(&venv), WORKERS));
}

/// A WebSocket echoed through corral, then the whole life of the example.
fn fastapi_with_its_websocket(corral: Corral) {
    let url = format!("ws://127.0.0.1:{}/ws", corral.port);
    let (mut socket, _) = tungstenite::connect(url.as_str()).expect("a WebSocket through corral");
    for text in ["one", "two"] {
        socket
            .send(tungstenite::Message::text(text))
            .expect("send a frame");
        let echo = socket.read().expect("read the echo");
        assert_eq!(echo.into_text().expect("text").as_str(), text);
    }
    let _ = socket.close(None);
    drop(socket);
    exercise(corral, "fastapi");
}

#[test]
fn node_http_server_on_port() {
    if !on_path("node") {
        return;
    }
    exercise(start_example("node/corral.toml", None, WORKERS), "node");
}

/// `ps` of a process group, for a failure message.
fn group_members(pgid: u32) -> String {
    std::process::Command::new("ps")
        .args(["-o", "pid,ppid,pgid,stat,args", "-g", &pgid.to_string()])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
