use super::*;
use crate::http2::SETTINGS;
use crate::http2::{frame, CONTINUATION, DATA, END_HEADERS, END_STREAM, HEADERS, RST_STREAM};

use tokio::io::AsyncReadExt;

/// `:status 103`, a literal with the static table's `:status` name.
const STATUS_103: &[u8] = &[0x08, 3, b'1', b'0', b'3'];

fn interim(stream: u32) -> Vec<u8> {
    frame(HEADERS, END_HEADERS, stream, STATUS_103)
}

/// What the codec would get of `wire` through [`Watched`], read `chunk` bytes at a
/// time: the bytes, and the error that ended the reads, if one did.
async fn through(wire: Vec<u8>, streams: usize, chunk: usize) -> (Vec<u8>, Option<io::Error>) {
    let mut watched = watch(std::io::Cursor::new(wire), streams);
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

#[tokio::test]
async fn a_stream_may_carry_its_interim_heads_its_head_and_trailers() {
    // 16 interim heads, the response head split over a CONTINUATION, DATA, trailers;
    // and the same again on another stream: the codec gets every byte.
    let mut wire = frame(SETTINGS, 0, 0, &[]);
    for stream in [1, 3] {
        for _ in 0..MAX_INTERIM_HEADS {
            wire.extend(interim(stream));
        }
        wire.extend(frame(HEADERS, 0, stream, &[0x88]));
        wire.extend(frame(CONTINUATION, END_HEADERS, stream, &[]));
        wire.extend(frame(DATA, 0, stream, b"body"));
        wire.extend(frame(HEADERS, END_HEADERS | END_STREAM, stream, &[]));
    }
    for chunk in [1, 7, 4096] {
        let (got, error) = through(wire.clone(), 100, chunk).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(got, wire, "chunk {chunk}");
    }
}

#[tokio::test]
async fn the_header_block_past_the_limit_fails_the_read_and_never_reaches_the_codec() {
    let mut wire = Vec::new();
    let allowed = usize::try_from(MOST_HEADER_BLOCKS).unwrap();
    for _ in 0..allowed {
        wire.extend(interim(1));
    }
    let fine = wire.len();
    for _ in 0..1000 {
        wire.extend(interim(1));
    }
    for chunk in [1, 14, 4096] {
        let (got, error) = through(wire.clone(), 100, chunk).await;
        let error = error.expect("the read fails");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("header blocks on stream 1"), "{error}");
        // Every frame before the fault passes, none after it (a read that ends inside
        // its header may have passed the first bytes of that header).
        assert!((fine..fine + 9).contains(&got.len()), "chunk {chunk}: {} passed", got.len());
        assert_eq!(got[..fine], wire[..fine]);
    }
}

#[tokio::test]
async fn ended_streams_are_forgotten_and_the_counts_stay_bounded() {
    // 10,000 streams ending in turn (by END_STREAM on HEADERS or DATA, or RST_STREAM),
    // each with the most header blocks allowed; then 10,000 the backend never ends, on
    // a connection of 4 streams: nothing fails, and at most 8 counts are kept.
    let mut wire = Vec::new();
    for stream in (1..20_000u32).step_by(2) {
        for _ in 0..MOST_HEADER_BLOCKS - 1 {
            wire.extend(interim(stream));
        }
        wire.extend(match stream % 3 {
            0 => frame(HEADERS, END_HEADERS | END_STREAM, stream, &[]),
            1 => frame(DATA, END_STREAM, stream, b""),
            _ => frame(RST_STREAM, 0, stream, &[0, 0, 0, 8]),
        });
    }
    for stream in (20_001..40_000u32).step_by(2) {
        wire.extend(interim(stream));
    }
    let mut watched = watch(std::io::Cursor::new(wire), 4);
    let mut sink = Vec::new();
    watched.read_to_end(&mut sink).await.expect("no stream passed the limit");
    assert!(watched.blocks.counted() <= 8, "{} counts", watched.blocks.counted());
}
