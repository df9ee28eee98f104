//! Lowering `[compression]`: which codings, at which levels, for which answers.

use crate::choices::Choices;
use crate::model::{Coding, Compression};
use crate::reader::{as_string, Reader, Table};

/// Levels when `[compression.level]` does not say, by [`Coding::index`]: zstd 3 (its own
/// default), Brotli 4 and gzip 5, the on-the-fly settings of Caddy and the nginx modules:
/// most of the ratio for a fraction of the top levels' CPU.
pub const DEFAULT_LEVELS: [u32; 3] = [3, 4, 5];

/// The media types compressed by default: text, and the text formats that do not say so.
pub const DEFAULT_TYPES: [&str; 12] = [
    "text/*",
    "application/json",
    "application/*+json",
    "application/x-ndjson",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/xml",
    "application/*+xml",
    "image/svg+xml",
    "application/wasm",
    "application/graphql-response+json",
];

/// The smallest answer compressed by default: under 1 KiB the frame costs more than it saves.
const DEFAULT_MIN_SIZE: u64 = 1024;

/// The range of levels each coding has, by [`Coding::index`].
const LEVELS: [(i64, i64); 3] = [(1, 19), (0, 11), (1, 9)];

pub(crate) fn compression(r: &mut Reader, top: &mut Table) -> Compression {
    let mut t = top.table(r, "compression");
    let enabled = t.boolean(r, "enabled").unwrap_or(false);
    let algorithms = algorithms(r, &mut t);
    let mut levels = DEFAULT_LEVELS;
    let mut level = t.table(r, "level");
    for coding in Coding::ALL {
        let (min, max) = LEVELS[coding.index()];
        if let Some(n) = level.integer(r, coding.token(), min, max) {
            levels[coding.index()] = n as u32;
        }
    }
    level.finish(r);
    let min_size = t.size(r, "min_size").unwrap_or(DEFAULT_MIN_SIZE);
    let types = types(r, &mut t);
    t.finish(r);
    Compression {
        enabled,
        algorithms,
        levels,
        min_size,
        types,
    }
}

/// `algorithms = ["zstd", "br", "gzip"]`: known codings, each once, at least one.
fn algorithms(r: &mut Reader, t: &mut Table) -> Vec<Coding> {
    let choices = Choices {
        key: "algorithms",
        expected: "an array of codings like [\"zstd\", \"br\", \"gzip\"]",
        entry: "a coding corral applies",
        all: &Coding::ALL,
        name: Coding::token,
        any_case: false,
    };
    let Some((path, codings, entries)) = choices.read(r, t) else {
        return Coding::ALL.to_vec();
    };
    if entries == 0 {
        r.error_nowhere(
            &path,
            "needs at least one coding; set enabled = false to turn compression off",
        );
    }
    codings
}

/// `types = ["text/*", "application/json"]`: media types or `type/*` and `type/*+suffix`
/// patterns, lowercased; types that are compressed already are refused.
fn types(r: &mut Reader, t: &mut Table) -> Vec<String> {
    let expected = "an array of media types like [\"text/*\", \"application/json\"]";
    let Some((path, items)) = t.array(r, "types", expected) else {
        return DEFAULT_TYPES.iter().map(|s| s.to_string()).collect();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let Some(text) = as_string(r, item, &item_path) else {
            continue;
        };
        let pattern = text.trim().to_ascii_lowercase();
        let why = match pattern.split_once('/') {
            Some((kind, sub)) if is_name(kind) && is_pattern(sub) => {
                compressed_already(&pattern).then_some(
                    "is compressed already; corral never compresses images, video, audio or archives",
                )
            }
            _ => Some("is not a media type; write it like \"text/html\", \"text/*\" or \"application/*+json\""),
        };
        match why {
            Some(why) => r.error(item.span(), &item_path, format!("{text:?} {why}")),
            None => out.push(pattern),
        }
    }
    out
}

/// Whether answers of `media_type` (lowercase, without parameters) are compressed already,
/// so compressing them again only costs CPU: images other than SVG, video, audio, fonts in
/// compressed formats and archives. Patterns such as `image/*` count as the types they match.
pub fn compressed_already(media_type: &str) -> bool {
    let Some((kind, sub)) = media_type.split_once('/') else {
        return false;
    };
    match kind {
        "image" => sub != "svg+xml" && sub != "bmp" && sub != "x-icon",
        "video" | "audio" => true,
        "font" => matches!(sub, "woff" | "woff2" | "*"),
        "application" => matches!(
            sub,
            "zip"
                | "gzip"
                | "x-gzip"
                | "zstd"
                | "x-bzip2"
                | "x-xz"
                | "x-7z-compressed"
                | "x-rar-compressed"
                | "vnd.rar"
                | "x-tar"
                | "java-archive"
                | "pdf"
        ),
        _ => false,
    }
}

/// A type name, as RFC 6838 allows (or `*` for all).
fn is_name(s: &str) -> bool {
    s == "*"
        || (!s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b)))
}

/// A subtype, `*`, or `*+suffix`.
fn is_pattern(s: &str) -> bool {
    is_name(s.strip_prefix("*+").unwrap_or(s))
}
