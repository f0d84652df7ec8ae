use super::*;
use crate::http2::{frame, CONTINUATION, DATA, END_HEADERS, END_STREAM, HEADERS, SETTINGS};

use tokio::io::AsyncReadExt;

/// `:status 103`, a literal with the static table's `:status` name.
const STATUS_103: &[u8] = &[0x08, 3, b'1', b'0', b'3'];

fn interim(stream: u32) -> Vec<u8> {
    frame(HEADERS, END_HEADERS, stream, STATUS_103)
}

/// A budget for `streams` streams at once, `opened` of them opened.
fn budget(streams: usize, opened: usize) -> Rc<HeaderBlocks> {
    let blocks = Rc::new(HeaderBlocks::new(BLOCKS_PER_STREAM, streams));
    (0..opened).for_each(|_| blocks.opened());
    blocks
}

/// What the codec would get of `wire` through [`Watched`], read `chunk` bytes at a
/// time: the bytes, and the error that ended the reads, if one did.
async fn through(
    wire: &[u8],
    blocks: Rc<HeaderBlocks>,
    chunk: usize,
) -> (Vec<u8>, Option<io::Error>) {
    let mut watched = watch(wire, blocks);
    let (mut got, mut buf) = (Vec::new(), vec![0; chunk]);
    // Bounded by the wire: each read takes a byte or ends.
    loop {
        match watched.read(&mut buf).await {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(error) => return (got, Some(error)),
        }
    }
}

/// 16 interim heads, the response head split over a CONTINUATION, DATA and trailers.
fn fullest_response(stream: u32) -> Vec<u8> {
    let mut wire = Vec::new();
    for _ in 0..MAX_INTERIM_HEADS {
        wire.extend(interim(stream));
    }
    wire.extend(frame(HEADERS, 0, stream, &[0x88]));
    wire.extend(frame(CONTINUATION, END_HEADERS, stream, &[]));
    wire.extend(frame(DATA, 0, stream, b"body"));
    wire.extend(frame(HEADERS, END_HEADERS | END_STREAM, stream, &[]));
    wire
}

#[tokio::test]
async fn streams_may_carry_their_interim_heads_their_heads_and_trailers() {
    // Three streams opened, each answered with the most header blocks allowed: the
    // codec gets every byte, however it is read.
    let mut wire = frame(SETTINGS, 0, 0, &[]);
    for stream in [1, 3, 5] {
        wire.extend(fullest_response(stream));
    }
    for chunk in [1, 7, 4096] {
        let (got, error) = through(&wire, budget(100, 3), chunk).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(got, wire, "chunk {chunk}");
    }
}

#[tokio::test]
async fn the_header_block_past_the_budget_fails_the_read_and_never_reaches_the_codec() {
    // One stream opened; its 18 blocks pass, the 19th and what follows do not, on this
    // stream or spread over others.
    let allowed = usize::try_from(BLOCKS_PER_STREAM).unwrap();
    for spread in [false, true] {
        let mut wire = Vec::new();
        for n in 0..allowed + 1000 {
            let stream = if spread { 2 * u32::try_from(n).unwrap() + 1 } else { 1 };
            wire.extend(interim(stream));
        }
        let fine = allowed * interim(1).len();
        for chunk in [1, 14, 4096] {
            let (got, error) = through(&wire, budget(100, 1), chunk).await;
            let error = error.expect("the read fails");
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            assert!(error.to_string().contains("header blocks a stream"), "{error}");
            // Every frame before the fault passes, none after it (a read that ends in
            // its header may have passed the first bytes of that header).
            let passed = got.len();
            assert!((fine..fine + 9).contains(&passed), "chunk {chunk}: {passed} passed");
            assert_eq!(got[..fine], wire[..fine]);
        }
    }
}

#[tokio::test]
async fn the_budget_is_capped_at_the_connections_streams() {
    // 1,000 streams opened one after another on a connection of 4 at once bank no more
    // than 4 streams' worth: a backend that answered none of them may send 72 blocks.
    let blocks = budget(4, 1000);
    assert_eq!(blocks.left(), 4 * BLOCKS_PER_STREAM);
    let wire: Vec<u8> = (0..100).flat_map(|_| interim(1)).collect();
    let (got, error) = through(&wire, blocks, 4096).await;
    assert!(error.is_some());
    assert_eq!(got.len(), 72 * interim(1).len());
}

#[tokio::test]
async fn ten_thousand_streams_answered_in_turn_never_run_out() {
    // Each stream opened just before its answer, as weir's streams are.
    let blocks = budget(2, 0);
    let mut sink = Vec::new();
    for stream in (1..20_000u32).step_by(2) {
        blocks.opened();
        let wire = fullest_response(stream);
        let mut watched = watch(&wire[..], Rc::clone(&blocks));
        sink.clear();
        watched.read_to_end(&mut sink).await.expect("within the budget");
    }
}
