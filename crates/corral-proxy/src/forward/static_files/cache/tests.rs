//! The cache's freshness and bounds, on real files (kept at once: no settling time).

use std::path::Path;

use super::*;

fn cache() -> FileCache {
    FileCache {
        shelves: ThreadLocal::new(),
        settle: Duration::ZERO,
    }
}

fn setup() -> (tempfile::TempDir, Root) {
    let dir = tempfile::tempdir().expect("dir");
    let canonical = std::fs::canonicalize(dir.path()).expect("canonical");
    let root = Root::new(&canonical);
    assert!(root.dir().is_some(), "the root is open");
    (dir, root)
}

/// Opens `name` under the root and keeps it as request path `/s/NAME`.
fn fill(cache: &FileCache, root: &Root, name: &str) -> Option<Arc<Cached>> {
    let opened = root.open(Path::new(name))?;
    cache.fill(
        root,
        &format!("/s/{name}"),
        &opened.relative,
        &opened.file,
        None,
    )
}

#[test]
fn an_unchanged_file_is_kept_and_a_changed_one_is_not_served() {
    let (dir, root) = setup();
    let cache = cache();
    let path = dir.path().join("a.txt");
    std::fs::write(&path, "first").expect("write");
    let kept = fill(&cache, &root, "a.txt").expect("kept");
    assert_eq!(&kept.bytes[..], b"first");
    assert_eq!(kept.content_type, "text/plain; charset=utf-8");
    let hit = cache.get(&root, "/s/a.txt").expect("a hit");
    assert!(Arc::ptr_eq(&hit, &kept));

    // Rewritten in place (another size): the times and size move, the entry goes.
    std::fs::write(&path, "second!").expect("rewrite");
    assert!(cache.get(&root, "/s/a.txt").is_none(), "stale bytes served");
    assert!(
        cache.get(&root, "/s/a.txt").is_none(),
        "the entry was dropped"
    );
    let kept = fill(&cache, &root, "a.txt").expect("kept again");
    assert_eq!(&kept.bytes[..], b"second!");

    // Replaced by a rename, with the same size and times: another inode.
    let new = dir.path().join("new.txt");
    std::fs::write(&new, "SECOND!").expect("write");
    let old_times = std::fs::metadata(&path)
        .expect("meta")
        .modified()
        .expect("mtime");
    std::fs::File::options()
        .write(true)
        .open(&new)
        .and_then(|f| f.set_modified(old_times))
        .expect("times");
    std::fs::rename(&new, &path).expect("rename");
    assert!(
        cache.get(&root, "/s/a.txt").is_none(),
        "a replaced file served"
    );

    // Gone: not served.
    let kept = fill(&cache, &root, "a.txt").expect("kept again");
    assert_eq!(&kept.bytes[..], b"SECOND!");
    std::fs::remove_file(&path).expect("rm");
    assert!(
        cache.get(&root, "/s/a.txt").is_none(),
        "a deleted file served"
    );
}

#[test]
fn a_path_turned_into_a_symlink_out_of_the_root_is_not_served() {
    let (dir, root) = setup();
    let outside = tempfile::tempdir().expect("dir");
    std::fs::write(outside.path().join("secret"), "SECRET").expect("write");
    let cache = cache();
    std::fs::write(dir.path().join("a.txt"), "inside").expect("write");
    fill(&cache, &root, "a.txt").expect("kept");
    std::fs::remove_file(dir.path().join("a.txt")).expect("rm");
    std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("a.txt"))
        .expect("symlink");
    assert!(cache.get(&root, "/s/a.txt").is_none());
    assert!(
        root.open(Path::new("a.txt")).is_none(),
        "openat2 refuses it"
    );
}

#[test]
fn large_and_unsettled_files_are_not_kept() {
    let (dir, root) = setup();
    std::fs::write(dir.path().join("big"), vec![7u8; MAX_FILE as usize + 1]).expect("write");
    std::fs::write(dir.path().join("fresh"), "x").expect("write");
    assert!(fill(&cache(), &root, "big").is_none());
    let waiting = FileCache::default();
    assert!(
        fill(&waiting, &root, "fresh").is_none(),
        "kept before settling"
    );
}

#[test]
fn the_bytes_kept_stay_within_bounds() {
    let (dir, root) = setup();
    let cache = cache();
    let piece = vec![1u8; MAX_FILE as usize];
    let fit = MAX_BYTES / piece.len();
    for i in 0..fit + 5 {
        std::fs::write(dir.path().join(format!("f{i}")), &piece).expect("write");
        fill(&cache, &root, &format!("f{i}")).expect("kept");
        let shelf = cache.shelves.get().expect("shelf").borrow();
        assert!(shelf.bytes <= MAX_BYTES, "{} bytes kept", shelf.bytes);
        let counted: usize = shelf.entries.values().map(|e| e.bytes.len()).sum();
        assert_eq!(counted, shelf.bytes);
    }
    let shelf = cache.shelves.get().expect("shelf").borrow();
    assert_eq!(shelf.entries.len(), fit);
}
