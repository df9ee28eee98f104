//! Each verb and answer read back as written; the refusals of malformed requests.

use super::*;

fn round_trip(request: Request) {
    let target = request.target();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    assert_eq!(
        Request::parse(path, query),
        Some(Ok(request.clone())),
        "{target}"
    );
}

#[test]
fn every_verb_reads_back_as_written() {
    round_trip(Request::Reload);
    round_trip(Request::Scale {
        pool: Some("green".into()),
        workers: 3,
    });
    round_trip(Request::Scale {
        pool: None,
        workers: 1,
    });
    round_trip(Request::Switch {
        to: Traffic::to("green"),
        route: None,
    });
    round_trip(Request::Switch {
        to: Traffic::parse_weights("blue=90,green=10").expect("weights"),
        route: None,
    });
    round_trip(Request::Switch {
        to: Traffic::to("api-green"),
        route: Some("example.com/api & more".into()),
    });
}

#[test]
fn the_wire_form_is_the_documented_one() {
    let scale = Request::Scale {
        pool: Some("web".into()),
        workers: 4,
    };
    assert_eq!(scale.target(), "/scale?pool=web&workers=4");
    let split = Request::Switch {
        to: Traffic::parse_weights("blue=90, green=10").expect("weights"),
        route: None,
    };
    assert_eq!(split.target(), "/switch?weights=blue=90,green=10");
    let api = Request::Switch {
        to: Traffic::to("api-green"),
        route: Some("api".into()),
    };
    assert_eq!(api.target(), "/switch?pool=api-green&route=api");
}

#[test]
fn malformed_requests_are_bad_requests_and_unknown_paths_none() {
    let bad = |path, query| {
        matches!(
            Request::parse(path, query),
            Some(Err(Refusal::BadRequest(_)))
        )
    };
    assert!(bad("/scale", "workers=0"));
    let too_many = format!("workers={}", MAX_WORKERS + 1);
    assert!(bad("/scale", &too_many));
    assert!(bad("/scale", "pool=web"));
    assert!(bad("/switch", ""));
    assert!(bad("/switch", "pool=a&weights=a=1,b=1"));
    assert!(bad("/switch", "weights=a=0"));
    assert!(bad("/switch", "pool=a&route=%ff"));
    assert_eq!(Request::parse("/nope", ""), None);
    assert_eq!(
        Request::parse("/scale", &format!("workers={MAX_WORKERS}")),
        Some(Ok(Request::Scale {
            pool: None,
            workers: MAX_WORKERS as u32
        }))
    );
}

#[test]
fn answers_and_refusals_read_back_through_http() {
    let answers = [
        Answer::Reloaded {
            reloaded: true,
            generation: 7,
        },
        Answer::Scaled {
            pool: "web".into(),
            workers: 2,
        },
        Answer::Switched(Switched {
            from: "blue".into(),
            to: "green".into(),
            workers: 3,
            took_ms: 120,
            left: vec!["blue".into()],
            previous: "draining, then stopped".into(),
            route: None,
        }),
        Answer::Switched(Switched {
            from: "api-blue".into(),
            to: "api-green".into(),
            workers: 1,
            took_ms: 80,
            left: vec![],
            previous: "kept warm".into(),
            route: Some("api".into()),
        }),
    ];
    for answer in answers {
        let (status, body) = to_http(&Ok(answer.clone()));
        assert_eq!(status, 200);
        assert_eq!(from_http(status, &body), Ok(answer));
    }
    let refused = Err(Refusal::Refused(vec!["a".into(), "b".into()]));
    let (status, body) = to_http(&refused);
    assert_eq!((status, from_http(status, &body)), (422, refused));
    let (status, body) = to_http(&Err(Refusal::Stopping));
    assert_eq!(status, 503);
    assert_eq!(body, r#"{"errors":["corral is stopping"]}"#);
    assert_eq!(from_http(status, &body), Err(Refusal::Stopping));
    assert_eq!(
        from_http(404, "not found\n"),
        Err(Refusal::BadRequest("status 404: not found".into()))
    );
}

#[test]
fn answers_keep_their_json_keys() {
    let (_, body) = to_http(&Ok(Answer::Reloaded {
        reloaded: true,
        generation: 2,
    }));
    assert_eq!(body, r#"{"reloaded":true,"generation":2}"#);
    let (_, body) = to_http(&Ok(Answer::Scaled {
        pool: "web".into(),
        workers: 2,
    }));
    assert_eq!(body, r#"{"pool":"web","workers":2}"#);
}
