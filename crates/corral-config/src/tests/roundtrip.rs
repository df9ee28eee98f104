//! `corral check` prints a config that reads back as the same config, whatever its strings
//! hold (NUL, U+FEFF, U+202E, U+10FFFF, quotes, backslashes) and however large its sizes.

use proptest::prelude::*;

use super::*;
use crate::render::toml_string;

/// Any text, weighted toward what Rust's `{:?}` and TOML write differently.
fn text() -> impl Strategy<Value = String> {
    let awkward = prop::sample::select(vec![
        "\0",
        "\u{feff}",
        "\u{202e}",
        "\u{10ffff}",
        "\"",
        "\\",
        "\n",
        "\t",
        "'",
        "\u{7f}",
        "\u{1b}",
        "é",
        "{port}",
        "#",
        "=",
    ]);
    prop::collection::vec(
        prop_oneof![
            awkward.prop_map(String::from),
            "[a-z0-9 ]{0,6}",
            any::<char>().prop_map(String::from)
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat())
}

fn duration() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["1ms", "999ms", "1s", "1500ms", "30s", "1h", "7200s"])
}

fn size() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("18446744073709551615".to_string()),
        Just("9223372036854775808".to_string()),
        (0u64..u64::MAX).prop_map(|n| n.to_string()),
        Just("10MiB".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn a_printed_config_reads_back_the_same(
        args in prop::collection::vec(text(), 0..4),
        env in prop::collection::btree_map("[A-Z_]{1,8}", text(), 0..4),
        cwd in text(),
        level in prop::sample::select(vec!["info", "debug", "warn"]),
        body in size(),
        memory in size(),
        timeout in duration(),
        idle in duration(),
        header_value in "[ -~]{0,20}",
    ) {
        let list = |v: &[String]| v.iter().map(|s| toml_string(s)).collect::<Vec<_>>().join(", ");
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{} = {}", toml_string(k), toml_string(v))).collect();
        let mut command = vec!["app".to_string(), "{port}".to_string()];
        command.extend(args);
        let text = format!(
            "[server.limits]\nbody_size = {}\n\n[log]\nlevel = {}\n\n[headers]\nset = {{ X-A = {} }}\n\n[websocket]\nidle_timeout = {}\n\n[pools.web]\ncommand = [{}]\ncwd = {}\nenv = {{ {} }}\nmax_memory = {}\ntimeout = {}\n",
            toml_string(&body),
            toml_string(level),
            toml_string(header_value.trim()),
            toml_string(idle),
            list(&command),
            toml_string(&cwd),
            env.join(", "),
            toml_string(&memory),
            toml_string(timeout),
        );
        let c = match parse(Path::new("corral.toml"), &text) {
            Ok(c) => c,
            Err(e) => panic!("the generated config is refused:\n{e}\n{text}"),
        };
        let printed = render(&c);
        let mut again = match parse(Path::new("corral.toml"), &printed) {
            Ok(again) => again,
            Err(e) => panic!("the print does not load:\n{e}\n--- print:\n{printed}"),
        };
        again.source = c.source.clone();
        prop_assert_eq!(again, c);
    }

    /// Any text made of config-shaped pieces: a config or a list of errors, never a panic.
    #[test]
    fn any_text_is_a_config_or_errors(
        pieces in prop::collection::vec(prop::sample::select(vec![
            "[server]\n", "[server.limits]\n", "[pools.web]\n", "[pools.a.health]\n", "[[rate_limits]]\n",
            "[websocket]\n", "[routing]\n", "[log]\n", "[headers]\n", "[server.tls]\n",
            "command = [\"app\", \"{port}\"]\n", "workers = 0\n", "workers = 99999999999\n",
            "body_size = \"16EiB\"\n", "body_size = -1\n", "timeout = \"0.0001ms\"\n",
            "rate = \"1/0.0001ms\"\n", "trusted_proxies = [\"10.0.0.1/8\", \" ::1\"]\n",
            "listen = [\"x\"]\n", "active = \"nope\"\n", "weights = { web = 0 }\n",
            "name = \"\\u0000\"\n", "set = { \"X\" = \"\\u202e\" }\n", "= 1\n", "[\n", "a.b.c = 1\n",
            "idle_timeout = \"1ms\"\n", "match = { path_prefix = 5 }\n", "key = \"header:\"\n",
        ]), 0..12),
    ) {
        let text = pieces.concat();
        if let Ok(c) = parse(Path::new("corral.toml"), &text) {
            // What loads prints as text that loads too.
            prop_assert!(parse(Path::new("corral.toml"), &render(&c)).is_ok());
        }
    }
}
