//! Response compression for the proxy (`[compression]`): the codings a client accepts,
//! which answers are worth compressing, and the streaming encoders. Knows neither pingora
//! nor the proxy: the proxy hands it field bytes and body pieces.
//!
//! The rule, as nginx's `gzip` and Caddy's `encode` apply it: an answer is compressed when
//! the client accepts one of the configured codings, the answer has a body of a listed
//! media type that is not compressed already, declares at least `min_size` bytes (or no
//! length), is not encoded, ranged (206) or `no-transform`, and the request is not `HEAD`.

mod answer;
mod encoder;
mod negotiate;

use corral_config::{compressed_already, Coding, Compression};
use prometheus::IntCounter;

pub use answer::AnswerFacts;
pub use encoder::Encoder;
pub use negotiate::{negotiate, Choice};

/// `[compression]` made ready for the request path once per config: nothing is parsed or
/// looked up per request but the client's and worker's own fields.
pub struct Compressor {
    algorithms: Vec<Coding>,
    levels: [u32; 3],
    min_size: u64,
    types: Vec<String>,
    counters: Counters,
}

/// Body bytes into and out of the encoders, by coding (`corral_compression_*_bytes_total`).
#[derive(Clone)]
pub struct Counters {
    /// Bytes the workers sent, by [`Coding::index`].
    pub input: [IntCounter; 3],
    /// Bytes the clients were sent, by [`Coding::index`].
    pub output: [IntCounter; 3],
}

impl Compressor {
    /// The compressor of `config`, or `None` when compression is off, so that the proxy's
    /// only cost then is one `Option` check per request.
    pub fn new(config: &Compression, counters: Counters) -> Option<Compressor> {
        (config.enabled && !config.algorithms.is_empty()).then(|| Compressor {
            algorithms: config.algorithms.clone(),
            levels: config.levels,
            min_size: config.min_size,
            types: config.types.clone(),
            counters,
        })
    }

    /// The coding for a request with these `Accept-Encoding` values (joined by commas).
    pub fn negotiate(&self, accept: &[u8]) -> Option<Choice> {
        negotiate(&self.algorithms, accept)
    }

    /// Whether an answer of `status` with these facts is compressed for `choice`.
    pub fn compresses(&self, status: u16, facts: &AnswerFacts, choice: Choice) -> bool {
        if !facts.transformable(status) {
            return false;
        }
        let media_type = facts.media_type();
        if media_type.is_empty()
            || compressed_already(media_type)
            || !self
                .types
                .iter()
                .any(|p| answer::type_matches(p, media_type))
        {
            return false;
        }
        // A client that refuses the plain form gets even a small answer compressed.
        choice.identity_refused || facts.length().is_none_or(|n| n >= self.min_size)
    }

    /// A new encoder for `coding` at its configured level.
    pub fn encoder(&self, coding: Coding) -> std::io::Result<Encoder> {
        Encoder::new(coding, self.levels[coding.index()])
    }

    /// Counts one compressed answer's body bytes, before and after.
    pub fn count(&self, coding: Coding, read: u64, written: u64) {
        self.counters.input[coding.index()].inc_by(read);
        self.counters.output[coding.index()].inc_by(written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compressor(min_size: u64) -> Compressor {
        let config = Compression {
            enabled: true,
            algorithms: Coding::ALL.to_vec(),
            levels: corral_config::DEFAULT_LEVELS,
            min_size,
            types: corral_config::DEFAULT_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let counter = || IntCounter::new("x", "x").expect("counter");
        let counters = Counters {
            input: [counter(), counter(), counter()],
            output: [counter(), counter(), counter()],
        };
        Compressor::new(&config, counters).expect("enabled")
    }

    fn facts(fields: &[(&str, &str)]) -> AnswerFacts {
        let mut facts = AnswerFacts::default();
        for (name, value) in fields {
            facts.observe(name.as_bytes(), value.as_bytes());
        }
        facts
    }

    const GZIP: Choice = Choice {
        coding: Coding::Gzip,
        identity_refused: false,
    };

    #[test]
    fn text_of_enough_length_is_compressed_images_and_small_answers_are_not() {
        let c = compressor(1024);
        let json = |n: &str| facts(&[("Content-Type", "application/json"), ("Content-Length", n)]);
        assert!(c.compresses(200, &json("2048"), GZIP));
        assert!(c.compresses(200, &facts(&[("Content-Type", "text/html")]), GZIP));
        assert!(!c.compresses(200, &json("100"), GZIP));
        let refusing = Choice {
            identity_refused: true,
            ..GZIP
        };
        assert!(c.compresses(200, &json("100"), refusing));
        assert!(!c.compresses(200, &facts(&[("Content-Type", "image/png")]), GZIP));
        assert!(c.compresses(200, &facts(&[("Content-Type", "image/svg+xml")]), GZIP));
        assert!(!c.compresses(200, &facts(&[("Content-Length", "5000")]), GZIP));
        assert!(!c.compresses(206, &json("5000"), GZIP));
    }

    #[test]
    fn off_means_no_compressor() {
        let config = Compression {
            enabled: false,
            algorithms: Coding::ALL.to_vec(),
            levels: corral_config::DEFAULT_LEVELS,
            min_size: 0,
            types: Vec::new(),
        };
        let counters = compressor(0).counters.clone();
        assert!(Compressor::new(&config, counters).is_none());
    }
}
