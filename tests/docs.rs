//! The configuration reference names every key corral accepts: the effective config that
//! `corral check` prints (every key, defaults filled in) is the list to hold it against.

mod support;

use support::{check, repo_root};

#[test]
fn configuration_md_documents_every_key_check_prints() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("corral.toml");
    std::fs::write(
        &path,
        "[[rate_limits]]\nname = \"api\"\nrate = \"10/s\"\nmatch = { path_prefix = \"/api\" }\n\
         [[routes]]\nhost = \"example.com\"\npools = [\"web\"]\n\
         [routing]\nactive = \"web\"\n\
         [pools.web]\ncommand = [\"gunicorn\", \"app:app\"]\nbind = \"fd\"\n\
         [pools.py]\napp = \"mysite.wsgi:application\"\n",
    )
    .expect("write");
    let (code, effective, stderr) = check(&path);
    assert_eq!(code, 0, "{stderr}");
    let reference =
        std::fs::read_to_string(repo_root().join("docs/configuration.md")).expect("read");
    let keys: Vec<&str> = effective
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim()))
        .collect();
    assert!(keys.len() >= 40, "{effective}");
    let missing: Vec<&&str> = keys
        .iter()
        .filter(|k| !reference.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not describe {missing:?}"
    );
}
