//! The control protocol: what `corral reload|scale|switch` asks the running master over the
//! control socket, and what it answers, written and read in this one place. The CLI
//! ([`Request::target`], [`from_http`]), the control socket's HTTP app
//! ([`Request::parse`], [`to_http`]) and the master (which matches on [`Request`] and
//! answers an [`Answer`]) share these types, so adding a verb means a variant here, its
//! handler in the master and its command in the CLI.
//!
//! On the wire a request is `POST /VERB?key=value&...` (so `curl --unix-socket` can ask
//! too) and an answer a JSON object: the verb's [`Answer`] with 200, or `{"errors": [...]}`
//! with 400 (a malformed request), 422 (refused: the running config is unchanged) or 503
//! (corral is stopping).
//!
//! This is a crate of its own because both the proxy (which serves the socket) and the
//! binary (the CLI and the master) speak it, and neither should import the other's
//! internals for it: it sits above `corral-config` (for [`Traffic`]) and below both.

use std::time::Duration;

use corral_config::{Traffic, MAX_WORKERS};
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

/// A control verb, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Re-read the config, like SIGHUP; refused with the errors of an invalid file.
    Reload,
    /// Set the number of workers of a pool.
    Scale {
        /// The pool; the active pool when `None`.
        pool: Option<String>,
        /// The new number of workers, `1..=MAX_WORKERS`.
        workers: u32,
    },
    /// Move traffic to another pool, or split it by weight, once the pools that gain a
    /// share pass their checks (`corral switch`); answered when the switch is done or
    /// refused.
    Switch {
        /// Where new requests are to go.
        to: Traffic,
        /// The `[[routes]]` route whose traffic moves; `None`: the route whose pools hold
        /// `to`'s (without routes, the only one).
        route: Option<String>,
    },
}

/// The answer to a request the master carried out; the JSON object of a 200. Untagged, so
/// the JSON keys stay those the API has always had: each variant's required keys must tell
/// it apart from the others (the tests read every one back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    /// `switch`: where traffic went.
    Switched(Switched),
    /// `scale`: the pool and its new count.
    Scaled {
        /// The pool scaled.
        pool: String,
        /// Its new worker count.
        workers: u32,
    },
    /// `reload`: the config generation now in force.
    Reloaded {
        /// Always true; tells the answer apart.
        reloaded: bool,
        /// The new generation.
        generation: u64,
    },
}

/// What a switch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Switched {
    /// Where traffic went before.
    pub from: String,
    /// Where it goes now.
    pub to: String,
    /// How many workers were checked.
    pub workers: usize,
    /// How long the switch took, start to flip.
    pub took_ms: u64,
    /// The pools left without a share.
    pub left: Vec<String>,
    /// What becomes of them.
    pub previous: String,
    /// The `[[routes]]` route switched; absent without routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
}

/// Why a request was not carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The request itself is wrong (400).
    BadRequest(String),
    /// The master refused it; the running config is unchanged (422).
    Refused(Vec<String>),
    /// corral is stopping and will not carry it out (503).
    Stopping,
}

/// What the master answers to a request.
pub type Reply = Result<Answer, Refusal>;

/// The JSON of a refusal.
#[derive(Serialize, Deserialize)]
struct Errors {
    errors: Vec<String>,
}

/// How long the CLI waits for a switch's or a reload's answer: starting a pool, or an app
/// pool's template importing its new code, takes up to the pool's `start_timeout`.
const SWITCH_WAIT: Duration = Duration::from_secs(900);
/// How long it waits for any other answer.
const WAIT: Duration = Duration::from_secs(30);

impl Request {
    /// The HTTP method of every control request.
    pub const METHOD: &'static str = "POST";

    /// The path and query of this request on the control socket.
    pub fn target(&self) -> String {
        match self {
            Request::Reload => "/reload".to_string(),
            Request::Scale {
                pool: Some(pool),
                workers,
            } => format!("/scale?pool={pool}&workers={workers}"),
            Request::Scale {
                pool: None,
                workers,
            } => format!("/scale?workers={workers}"),
            // Pool names are words (the config allows nothing else) and weights are
            // `name=N,...`: neither needs escaping in a query.
            Request::Switch { to, route } => {
                let mut target = if to.weights.is_empty() {
                    format!("/switch?pool={}", to.active)
                } else {
                    format!("/switch?weights={to}")
                };
                // A route's name is free text: escaped.
                if let Some(route) = route {
                    let route = utf8_percent_encode(route, NON_ALPHANUMERIC);
                    target.push_str(&format!("&route={route}"));
                }
                target
            }
        }
    }

    /// The request `path` and `query` name: `None` when the path is no verb (404), an
    /// error when its arguments are wrong (400).
    pub fn parse(path: &str, query: &str) -> Option<Result<Request, Refusal>> {
        let arg = |key: &str| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
        };
        let request = match path {
            "/reload" => Ok(Request::Reload),
            "/scale" => arg("workers")
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|n| (1..=MAX_WORKERS).contains(&i64::from(*n)))
                .map(|workers| Request::Scale {
                    pool: arg("pool").map(str::to_string),
                    workers,
                })
                .ok_or_else(|| format!("workers must be 1..{MAX_WORKERS}")),
            "/switch" => {
                let route = match arg("route").map(|r| percent_decode_str(r).decode_utf8()) {
                    None => None,
                    Some(Ok(route)) if !route.is_empty() => Some(route.into_owned()),
                    Some(_) => {
                        let why = "route must be a route's name, in UTF-8".to_string();
                        return Some(Err(Refusal::BadRequest(why)));
                    }
                };
                match (arg("pool").filter(|p| !p.is_empty()), arg("weights")) {
                    (Some(pool), None) => Ok(Request::Switch {
                        to: Traffic::to(pool),
                        route,
                    }),
                    (None, Some(weights)) => Traffic::parse_weights(weights)
                        .map(|to| Request::Switch { to, route }),
                    _ => Err(
                        "say where traffic goes: /switch?pool=NAME or /switch?weights=blue=90,green=10 (and &route=NAME with [[routes]])"
                            .to_string(),
                    ),
                }
            }
            _ => return None,
        };
        Some(request.map_err(Refusal::BadRequest))
    }

    /// How long the CLI waits for the answer: as long as the work it reports on.
    pub fn patience(&self) -> Duration {
        match self {
            Request::Switch { .. } | Request::Reload => SWITCH_WAIT,
            Request::Scale { .. } => WAIT,
        }
    }
}

/// A reply as its HTTP status and JSON body.
pub fn to_http(reply: &Reply) -> (u16, String) {
    let errors = |status, errors: Vec<String>| {
        let body = serde_json::to_string(&Errors { errors }).unwrap_or_default();
        (status, body)
    };
    match reply {
        Ok(answer) => (200, serde_json::to_string(answer).unwrap_or_default()),
        Err(Refusal::BadRequest(why)) => errors(400, vec![why.clone()]),
        Err(Refusal::Refused(why)) => errors(422, why.clone()),
        Err(Refusal::Stopping) => errors(503, vec!["corral is stopping".to_string()]),
    }
}

/// The reply an HTTP status and body carry; a body that is not the protocol's is refused
/// with what it said.
pub fn from_http(status: u16, body: &str) -> Reply {
    if status == 200 {
        return serde_json::from_str::<Answer>(body)
            .map_err(|_| Refusal::BadRequest(format!("unexpected answer: {}", body.trim())));
    }
    let errors = serde_json::from_str::<Errors>(body)
        .map(|e| e.errors)
        .unwrap_or_else(|_| vec![format!("status {status}: {}", body.trim())]);
    Err(match status {
        422 => Refusal::Refused(errors),
        503 => Refusal::Stopping,
        _ => Refusal::BadRequest(errors.join("; ")),
    })
}

#[cfg(test)]
mod tests;
