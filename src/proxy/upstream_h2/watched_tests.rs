use super::*;
use crate::http2::{frame, CONTINUATION, DATA, END_HEADERS, END_STREAM, HEADERS, SETTINGS};

use tokio::io::AsyncReadExt;

/// `:status 103`, a literal with the static table's `:status` name.
const STATUS_103: &[u8] = &[0x08, 3, b'1', b'0', b'3'];

fn interim(stream: u32) -> Vec<u8> {
    frame(HEADERS, END_HEADERS, stream, STATUS_103)
}

/// Counts for the streams weir opened.
fn opened(streams: &[u32]) -> Rc<HeaderBlocks> {
    let blocks = Rc::new(HeaderBlocks::new(BLOCKS_PER_STREAM));
    streams.iter().for_each(|&stream| blocks.open(stream));
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
    // Three streams opened, each answered with the most header blocks allowed, and
    // HEADERS on a stream weir let go (reset or ended: the codec drops them): the codec
    // gets every byte, however it is read.
    let mut wire = frame(SETTINGS, 0, 0, &[]);
    for stream in [1, 3, 5] {
        wire.extend(fullest_response(stream));
    }
    for _ in 0..100 {
        wire.extend(interim(7));
    }
    for chunk in [1, 7, 4096] {
        let blocks = opened(&[1, 3, 5, 7]);
        blocks.close(7);
        let (got, error) = through(&wire, blocks, chunk).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(got, wire, "chunk {chunk}");
    }
}

#[tokio::test]
async fn the_header_block_past_the_limit_fails_the_read_and_never_reaches_the_codec() {
    // The 19th block on one of weir's streams, after 17 on another: every frame before
    // it passes, none from it on.
    let allowed = usize::try_from(BLOCKS_PER_STREAM).unwrap();
    let mut wire: Vec<u8> = (0..allowed - 1).flat_map(|_| interim(3)).collect();
    wire.extend((0..allowed).flat_map(|_| interim(1)));
    let fine = wire.len();
    wire.extend((0..1000).flat_map(|_| interim(1)));
    for chunk in [1, 14, 4096] {
        let (got, error) = through(&wire, opened(&[1, 3]), chunk).await;
        let error = error.expect("the read fails");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("more than 18 on a stream"), "{error}");
        // A read that ends in the faulty frame's header may have passed its first bytes.
        let passed = got.len();
        assert!((fine..fine + 9).contains(&passed), "chunk {chunk}: {passed} passed");
        assert_eq!(got[..fine], wire[..fine]);
    }
}

#[tokio::test]
async fn streams_weir_lets_go_are_forgotten() {
    // 10,000 streams opened, answered whole and let go, in turn: none passes the
    // limit and no count is left; a stream let go may get more HEADERS uncounted.
    let blocks = opened(&[]);
    let mut sink = Vec::new();
    for stream in (1..20_000u32).step_by(2) {
        blocks.open(stream);
        let wire = fullest_response(stream);
        let mut watched = watch(&wire[..], Rc::clone(&blocks));
        sink.clear();
        watched.read_to_end(&mut sink).await.expect("within the limit");
        blocks.close(stream);
    }
    assert_eq!(blocks.counted(), 0);
    let late: Vec<u8> = (0..100).flat_map(|_| interim(1)).collect();
    let (got, error) = through(&late, Rc::clone(&blocks), 4096).await;
    assert!(error.is_none() && got == late);
}

#[tokio::test]
async fn a_header_block_for_a_stream_weir_has_not_opened_fails_the_read() {
    // An answer before the request: it could wait in the codec's buffer until weir
    // opens that stream, and be queued for it uncounted.
    let mut wire = fullest_response(1);
    let fine = wire.len();
    wire.extend(interim(3));
    let (got, error) = through(&wire, opened(&[1]), 4096).await;
    assert_eq!(got.len(), fine);
    assert!(error.expect("the read fails").to_string().contains("not opened"));
}
