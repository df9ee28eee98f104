//! The spool alone: order across memory and the temp file, the limits, the ends, and that
//! nothing is left in the temp directory or the gauges.

use std::time::Duration;

use super::*;

fn settings(dir: &std::path::Path, answer_buffer: usize, max_temp_file: u64) -> BufferSettings {
    BufferSettings {
        memory: 1 << 20,
        answer_buffer,
        body_buffer: 0,
        max_temp_file,
        temp_dir: dir.to_path_buf(),
    }
}

fn metrics() -> corral_telemetry::Metrics {
    corral_telemetry::Metrics::new().expect("metrics")
}

async fn pull_all(spool: &Spool<'_>) -> (Vec<u8>, bool) {
    let mut all = Vec::new();
    loop {
        match spool.pull().await {
            Pulled::Piece(piece) => all.extend_from_slice(&piece),
            Pulled::End => return (all, true),
            Pulled::Failed => return (all, false),
        }
    }
}

#[tokio::test]
async fn pieces_come_out_in_order_across_memory_and_the_temp_file_which_has_no_name() {
    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(dir.path(), 10, 1 << 20);
    let m = metrics();
    let spool = Spool::new(&settings, &m.buffer, &m.buffer.answers_spilled);
    let mut sent = Vec::new();
    for i in 0..50u8 {
        let piece = vec![i; 7];
        spool.push(&piece).await.expect("push");
        sent.extend_from_slice(&piece);
    }
    spool.finish();
    assert!(spool.on_disk() > 0, "past 10 bytes, pieces go to the file");
    assert_eq!(m.buffer.answers_spilled.get(), 1, "one spill per answer");
    assert!(m.buffer.disk.get() > 0);
    let names: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
    assert!(names.is_empty(), "the temp file has no name: {names:?}");
    let (got, whole) = pull_all(&spool).await;
    assert!(whole);
    assert_eq!(got, sent);
    drop(spool);
    assert_eq!((m.buffer.memory.get(), m.buffer.disk.get()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_full_spool_holds_the_pusher_until_the_puller_takes_a_piece() {
    let dir = tempfile::tempdir().expect("dir");
    // Unbuffered: one piece waits at most.
    let settings = settings(dir.path(), 0, 0);
    let m = metrics();
    let spool = Spool::new(&settings, &m.buffer, &m.buffer.answers_spilled);
    spool
        .push(b"one")
        .await
        .expect("an empty spool takes a piece");
    let second = tokio::time::timeout(Duration::from_secs(5), spool.push(b"two")).await;
    assert!(second.is_err(), "the second piece waits for room");
    let pushing = async {
        spool.push(b"two").await.expect("push");
        spool.finish();
    };
    let (_, (got, whole)) = tokio::join!(pushing, pull_all(&spool));
    assert!(whole);
    assert_eq!(got, b"onetwo");
    assert_eq!(spool.on_disk(), 0);
    assert_eq!(m.buffer.answers_spilled.get(), 0);
}

#[tokio::test]
async fn the_process_budget_sends_pieces_to_the_temp_file_sooner() {
    let dir = tempfile::tempdir().expect("dir");
    let mut settings = settings(dir.path(), 1 << 20, 1 << 20);
    settings.memory = 100;
    let m = metrics();
    let spool = Spool::new(&settings, &m.buffer, &m.buffer.answers_spilled);
    for _ in 0..10 {
        spool.push(&[1; 30]).await.expect("push");
    }
    assert!(m.buffer.memory.get() <= 100, "{}", m.buffer.memory.get());
    assert_eq!(spool.on_disk(), 300 - m.buffer.memory.get() as u64);
}

#[tokio::test]
async fn a_gone_puller_fails_the_next_push_and_a_failed_pusher_ends_the_pull() {
    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(dir.path(), 1 << 10, 1 << 20);
    let m = metrics();
    let spool = Spool::new(&settings, &m.buffer, &m.buffer.answers_spilled);
    spool.push(b"a").await.expect("push");
    spool.puller_gone();
    assert!(matches!(spool.push(b"b").await, Err(PullerGone)));
    drop(spool);

    let spool = Spool::new(&settings, &m.buffer, &m.buffer.answers_spilled);
    spool.push(b"a").await.expect("push");
    spool.fail();
    assert!(matches!(spool.pull().await, Pulled::Failed));
    drop(spool);
    assert_eq!(m.buffer.memory.get(), 0);
}

#[tokio::test]
async fn a_temp_dir_that_cannot_be_used_paces_the_pusher_instead_of_failing() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").expect("write");
    // A file where the directory should be: no temp file can be made there.
    let settings = settings(&file, 0, 1 << 20);
    let m = metrics();
    let spool = Spool::new(&settings, &m.buffer, &m.buffer.answers_spilled);
    let pushing = async {
        for i in 0..5u8 {
            spool.push(&[i; 10]).await.expect("push");
        }
        spool.finish();
    };
    let (_, (got, whole)) = tokio::join!(pushing, pull_all(&spool));
    assert!(whole);
    assert_eq!(got.len(), 50);
    assert_eq!(spool.on_disk(), 0);
}

#[tokio::test]
async fn a_missing_temp_dir_is_made() {
    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(&dir.path().join("made/here"), 0, 1 << 20);
    let m = metrics();
    let spool = Spool::new(&settings, &m.buffer, &m.buffer.answers_spilled);
    spool.push(b"first").await.expect("push");
    spool.push(b"second").await.expect("push");
    assert_eq!(spool.on_disk(), 6);
}

#[test]
fn a_body_file_reads_back_in_pieces_and_its_memory_and_disk_are_given_back() {
    let dir = tempfile::tempdir().expect("dir");
    let mut settings = settings(dir.path(), 0, 0);
    settings.body_buffer = 100;
    let m = metrics();
    let mut memory = MemoryHold::new(&m.buffer);
    assert!(memory.take(60, &settings));
    assert!(!memory.take(60, &settings), "past body_buffer");
    let mut file = BodyFile::create(&settings, &m.buffer).expect("file");
    let sent: Vec<u8> = (0..200_000u32).map(|k| (k % 251) as u8).collect();
    for part in sent.chunks(7000) {
        file.append(part).expect("append");
    }
    let mut read = Vec::new();
    for (at, len) in file.pieces() {
        assert!(len <= 64 * 1024);
        read.extend(file.read(at, len).expect("read"));
    }
    assert_eq!(read, sent);
    assert_eq!((m.buffer.memory.get(), m.buffer.disk.get()), (60, 200_000));
    assert_eq!(m.buffer.bodies_spilled.get(), 1);
    drop((memory, file));
    assert_eq!((m.buffer.memory.get(), m.buffer.disk.get()), (0, 0));
}

#[tokio::test]
async fn a_pull_takes_at_most_64_kib_of_a_large_piece_in_memory_or_in_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let settings = settings(dir.path(), 300 << 10, 1 << 30);
    let m = metrics();
    let spool = Spool::new(&settings, &m.buffer, &m.buffer.answers_spilled);
    let big: Vec<u8> = (0..256 << 10).map(|k| (k % 251) as u8).collect();
    spool
        .push_owned(bytes::Bytes::from(big.clone()))
        .await
        .expect("kept in memory as it is");
    spool.push(&big).await.expect("to the temp file");
    spool.push(&big).await.expect("after it in the temp file");
    spool.finish();
    assert_eq!(spool.on_disk(), 512 << 10);
    let mut sizes = Vec::new();
    let mut all = Vec::new();
    loop {
        match spool.pull().await {
            Pulled::Piece(piece) => {
                sizes.push(piece.len());
                all.extend_from_slice(&piece);
            }
            Pulled::End => break,
            Pulled::Failed => panic!("failed"),
        }
    }
    assert_eq!(sizes, vec![64 << 10; 12]);
    assert_eq!(all, [&big[..], &big[..], &big[..]].concat());
    drop(spool);
    assert_eq!((m.buffer.memory.get(), m.buffer.disk.get()), (0, 0));
}
