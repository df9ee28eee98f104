//! Concurrency per worker and the bounded queue in the proxy.

mod support;

use std::time::{Duration, Instant};

use support::{client, expect_quick_503, get, testapp_bin, wait_for, Corral};

fn in_flight_on_workers(corral: &Corral) -> u64 {
    corral
        .workers()
        .iter()
        .map(|w| w["in_flight"].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn a_busy_sync_worker_gets_no_second_request_and_a_full_queue_answers_503() {
    let text = format!(
        "[pools.web]\ncommand = [{:?}, \"--port\", \"{{port}}\"]\nworkers = 4\nconcurrency = 1\nqueue_size = 2\nqueue_timeout = \"20s\"\n",
        testapp_bin().display().to_string()
    );
    let corral = Corral::start(&text, "", 4);
    // Four slow requests occupy the four sync workers.
    let slow_url = corral.url("/sleep?ms=3000");
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let url = slow_url.clone();
            std::thread::spawn(move || get(&client(), &url))
        })
        .collect();
    wait_for("4 busy workers", Duration::from_secs(10), || {
        (in_flight_on_workers(&corral) == 4).then_some(())
    });
    let busy_pids: Vec<u64> = corral
        .workers()
        .iter()
        .filter_map(|w| w["pid"].as_u64())
        .collect();
    assert!(
        corral.workers().iter().all(|w| w["in_flight"] == 1),
        "one request per worker"
    );

    // A 5th, fast request waits in the queue and is served as soon as a worker frees up.
    let fast_url = corral.url("/");
    let start = Instant::now();
    let fast = std::thread::spawn(move || (get(&client(), &fast_url), start.elapsed()));
    wait_for("the fast request to queue", Duration::from_secs(5), || {
        (corral.metric("corral_queue_depth{pool=\"web\"}") == 1.0).then_some(())
    });
    assert_eq!(
        in_flight_on_workers(&corral),
        4,
        "no worker got a second request"
    );

    // One more fills the queue (size 2); the next is refused at once with Retry-After.
    let filler_url = corral.url("/");
    let filler = std::thread::spawn(move || get(&client(), &filler_url));
    wait_for("queue full", Duration::from_secs(5), || {
        (corral.metric("corral_queue_depth{pool=\"web\"}") == 2.0).then_some(())
    });
    expect_quick_503(&corral.url("/"), Duration::from_millis(500));

    let (answer, waited) = fast.join().expect("fast");
    let (status, body) = answer.expect("fast request");
    assert_eq!(status, 200);
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(6),
        "waited {waited:?}"
    );
    let pid = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["pid"].as_u64())
        .expect("pid");
    assert!(busy_pids.contains(&pid));
    assert_eq!(
        filler.join().expect("filler").expect("filler request").0,
        200
    );
    for s in slow {
        assert_eq!(s.join().expect("slow").expect("slow request").0, 200);
    }
    assert_eq!(corral.metric("corral_queue_depth{pool=\"web\"}"), 0.0);
}

#[test]
fn queue_timeout_answers_503_with_retry_after() {
    let text = format!(
        "[pools.web]\ncommand = [{:?}, \"--port\", \"{{port}}\"]\nworkers = 1\nconcurrency = 1\nqueue_timeout = \"500ms\"\n",
        testapp_bin().display().to_string()
    );
    let corral = Corral::start(&text, "", 1);
    let slow_url = corral.url("/sleep?ms=3000");
    let slow = std::thread::spawn(move || get(&client(), &slow_url));
    wait_for("busy worker", Duration::from_secs(10), || {
        (in_flight_on_workers(&corral) == 1).then_some(())
    });
    let start = Instant::now();
    expect_quick_503(&corral.url("/"), Duration::from_secs(2));
    assert!(
        start.elapsed() >= Duration::from_millis(450),
        "503 before queue_timeout: {:?}",
        start.elapsed()
    );
    assert_eq!(slow.join().expect("slow").expect("slow request").0, 200);
}
