//! The targets that need no wire oracle: the chunked decoder against itself and the
//! strict chunked reader, the admin head, the config parser and the sticky cookie.

use std::sync::Arc;

use weir::admin::http::{parse_head, MAX_ADMIN_BODY_BYTES};
use weir::balance::key::cookie_value;
use weir::balance::sticky::Sticky;
use weir::balance::{PickRequest, Strategy};
use weir::config::parse::parse_str;
use weir::config::{BackendAddress, PoolConfig, StickyConfig, StrategyKind};
use weir::http1::chunked::{ChunkError, Decoder, MAX_CHUNK_LINE_BYTES, MAX_TRAILER_BYTES};
use weir::proxy::affinity::strip_cookie;
use weir::snapshot::{Backend, BackendLive, BackendState};

use crate::oracle;
use crate::request::show;

/// How a walk over a chunked body ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Done(usize),
    Incomplete,
    Refused(ChunkError),
}

/// Walks `body` with weir's decoder, offering it `window(i)` bytes at step `i` (at least
/// one); returns how it ended and the chunk data it found.
fn walk(body: &[u8], mut window: impl FnMut(usize) -> usize) -> (End, Vec<u8>) {
    let mut decoder = Decoder::new();
    let mut data = Vec::new();
    let mut at = 0;
    // Bounded: every step consumes at least one byte until the decoder is done.
    for step in 0.. {
        if decoder.is_done() {
            return (End::Done(at), data);
        }
        if at == body.len() {
            return (End::Incomplete, data);
        }
        let end = body.len().min(at + window(step).max(1));
        match decoder.feed(&body[at..end]) {
            Ok(fed) => {
                if let Some(range) = fed.data {
                    data.extend_from_slice(&body[at + range.start..at + range.end]);
                }
                assert!(fed.consumed > 0 || decoder.is_done(), "no progress at {at}");
                at += fed.consumed;
            }
            Err(error) => return (End::Refused(error), data),
        }
    }
    unreachable!()
}

/// Chunked target: the first byte seeds the split sizes, the rest is a body. Splits must
/// not change the outcome, and a body the strict reader accepts must be accepted with
/// the same data, unless it is over one of weir's documented bounds.
pub fn chunked(data: &[u8]) {
    let Some((&seed, body)) = data.split_first() else { return };
    let whole = walk(body, |_| body.len());
    let mut state = u32::from(seed) | 1;
    let split = walk(body, |_| {
        // xorshift: cheap, deterministic windows of 1 to 16 bytes.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 16) as usize + 1
    });
    assert_eq!(whole, split, "splits changed the outcome of {}", show(body));
    let bytewise = walk(body, |_| 1);
    assert_eq!(whole, bytewise, "byte-at-a-time changed the outcome of {}", show(body));
    let Ok((payload, len)) = oracle::chunked(body) else { return };
    let over_bounds = body[..len].split(|&b| b == b'\n').any(|l| l.len() >= MAX_CHUNK_LINE_BYTES)
        || len >= MAX_TRAILER_BYTES;
    if !over_bounds {
        assert_eq!(whole.0, End::Done(len), "a valid body was not read: {}", show(body));
        assert_eq!(whole.1.len() as u64, payload, "chunk data differs: {}", show(body));
    }
    canonical(body, usize::from(seed % 16) + 1);
}

/// What weir forwards of a chunked body is canonical, whatever the read windows: the
/// strict reader accepts it whole, with the same data, and it never outgrows the input.
fn canonical(body: &[u8], window: usize) {
    let Some((took, out)) = crate::rewrite(body, body.len().max(1)) else { return };
    let split = crate::rewrite(body, window).expect("a split refused what whole accepted");
    assert_eq!((took, &out), (split.0, &split.1), "splits changed the rewrite of {}", show(body));
    assert!(out.len() <= took, "the rewrite outgrew its input: {}", show(body));
    let Ok((payload, len)) = oracle::chunked(&out) else {
        panic!("weir forwards a chunked body the strict reader refuses: {}", show(&out));
    };
    assert_eq!(len, out.len(), "bytes after the rewritten body: {}", show(&out));
    let data = crate::dechunk(body).map(|(_, data)| data).unwrap_or_default();
    assert_eq!(payload, data.len() as u64, "the rewrite changed the data: {}", show(body));
    let rewritten = crate::dechunk(&out).map(|(_, data)| data).unwrap_or_default();
    assert_eq!(rewritten, data, "the rewrite changed the data bytes: {}", show(body));
    // The canonical form is a fixed point: nothing (no extension, no leading zero) is
    // left to rewrite.
    let again = crate::rewrite(&out, out.len().max(1)).map(|(_, again)| again);
    assert_eq!(again.as_ref(), Some(&out), "the rewrite is not canonical: {}", show(&out));
}

/// Admin head target: never a panic, and an accepted head has a sane length and a body
/// length that every `Content-Length` field states plainly.
pub fn admin_head(data: &[u8]) {
    let Ok(Some(head)) = parse_head(data) else { return };
    assert!(head.len <= data.len());
    assert!(head.content_length <= MAX_ADMIN_BODY_BYTES);
    assert!(!head.request.path.contains('?'), "query left in the path");
    for (name, value) in &head.request.headers {
        assert!(!name.eq_ignore_ascii_case("transfer-encoding"), "chunked admin body accepted");
        if name.eq_ignore_ascii_case("content-length") {
            // Digits, or a list of one number repeated (RFC 9112 §6.3 lets a recipient
            // take `2, 2` as 2), and the body length the head settled on.
            let parts: Vec<&[u8]> =
                value.as_bytes().split(|&b| b == b',').map(oracle::trim).collect();
            let plain = parts.iter().all(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
            assert!(plain, "admin accepted Content-Length {value:?}");
            let n = |p: &&[u8]| std::str::from_utf8(p).ok()?.parse::<usize>().ok();
            let numbers: Vec<Option<usize>> = parts.iter().map(n).collect();
            assert!(numbers.iter().all(|&x| x == Some(head.content_length)), "{value:?}");
        }
    }
}

/// Config target: any text gives a config or errors that each point inside the text as
/// `FILE:LINE:COL: message`.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Err(errors) = parse_str("fuzz.toml", text) else { return };
    assert!(!errors.is_empty(), "an error result without errors");
    let lines: Vec<&str> = text.split('\n').collect();
    for error in errors {
        assert_eq!(error.file, "fuzz.toml");
        assert!(error.line >= 1 && error.line <= lines.len(), "line out of the text: {error}");
        let width = lines[error.line - 1].chars().count();
        assert!(error.col >= 1 && error.col <= width + 1, "column out of the line: {error}");
        assert!(!error.message.is_empty(), "an error without a message");
        let prefix = format!("fuzz.toml:{}:{}: ", error.line, error.col);
        assert!(error.to_string().starts_with(&prefix), "not FILE:LINE:COL: {error}");
    }
}

/// Three backends behind a sticky pool with the default cookie.
fn sticky_pool() -> (Sticky, Vec<Backend>, StickyConfig) {
    let config = StickyConfig::default();
    let mut settings = PoolConfig::new("fuzz", StrategyKind::Sticky, Vec::new());
    settings.sticky = Some(config.clone());
    let backends: Vec<Backend> = (0..3u64)
        .map(|i| {
            let address = BackendAddress::parse(&format!("10.0.0.{i}:80")).expect("address");
            Backend {
                label: address.authority(),
                address,
                resolved: Vec::new(),
                weight: 1,
                state: BackendState::Active,
                live: Arc::new(BackendLive::new(i + 1, 1)),
                tier: 0,
                serving: true,
            }
        })
        .collect();
    (Sticky::new(&settings, &backends), backends, config)
}

thread_local! {
    static POOL: (Sticky, Vec<Backend>, StickyConfig) = sticky_pool();
}

/// Sticky target: the input is a `Cookie` value. A backend's id in it pins the pick to
/// that backend; anything else still gets a pick; stripping leaves no sticky cookie.
pub fn sticky(data: &[u8]) {
    POOL.with(|(sticky, backends, config)| {
        let name = config.cookie.as_bytes();
        let id = cookie_value(data, name);
        let pick = sticky.pick(backends, &PickRequest { hash_key: None, sticky_id: id });
        let pick = pick.expect("healthy backends, no pick");
        let named = id.and_then(|id| {
            (0..backends.len()).find(|&i| sticky.sticky_id(i).is_some_and(|s| s.as_bytes() == id))
        });
        if let Some(named) = named {
            assert_eq!(pick, named, "the cookie named another backend");
        }
        check_strip(config, data);
    });
}

/// `strip_cookie` on a head carrying `value` removes exactly the sticky cookie.
fn check_strip(config: &StickyConfig, value: &[u8]) {
    // Only values a head can carry: httparse has already refused the rest.
    if !value.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80) {
        return;
    }
    let mut head = [b"GET / HTTP/1.1\r\nHost: a\r\nCookie: ", value, b"\r\nX: y\r\n\r\n"].concat();
    strip_cookie(config, &mut head);
    let parsed = oracle::request_head(&head)
        .unwrap_or_else(|e| panic!("stripped head does not parse: {e:?}\n{}", show(&head)));
    assert_eq!(parsed.len, head.len(), "bytes after the stripped head\n{}", show(&head));
    assert_eq!(parsed.values("host").collect::<Vec<_>>(), [b"a"]);
    assert_eq!(parsed.values("x").collect::<Vec<_>>(), [b"y"]);
    for cookie in parsed.values("cookie") {
        let left = cookie_value(cookie, config.cookie.as_bytes());
        assert!(left.is_none(), "sticky cookie left in\n{}", show(&head));
    }
}

/// PROXY protocol target: the input is what a client sends first. Whatever it is, the
/// parse never panics; a header is never longer than the input or the bound; every
/// prefix of a complete header is `Partial` (the reader's promise: it may consume all
/// it has seen); bytes after a header never change it; and what weir writes for the
/// header's addresses reads back as the same addresses.
pub fn proxy_protocol(data: &[u8]) {
    use weir::proxy_protocol::{parse, write, Parsed, Version, MAX_HEADER_LEN};
    let Ok(Parsed::Complete(header)) = parse(data) else {
        return;
    };
    assert!(header.len <= data.len() && header.len <= MAX_HEADER_LEN, "{header:?}");
    for end in 1..header.len {
        assert_eq!(parse(&data[..end]), Ok(Parsed::Partial), "prefix of {end} bytes");
    }
    assert_eq!(parse(&data[..header.len]), Ok(Parsed::Complete(header)));
    let Some((src, dst)) = header.addresses else {
        return;
    };
    for version in [Version::V1, Version::V2] {
        let mut out = Vec::new();
        write(&mut out, version, src, dst);
        let Ok(Parsed::Complete(again)) = parse(&out) else {
            panic!("weir's own {version:?} header does not parse: {out:?}");
        };
        assert_eq!((again.len, again.addresses), (out.len(), Some((src, dst))));
    }
}

/// weir's Redis reply parser (`limit::resp::parse`, a rate limit's store): never panics;
/// a reply fits the input and the bound; each of its prefixes asks for more bytes, and
/// bytes after it change nothing.
pub fn resp(data: &[u8]) {
    use weir::limit::resp::{parse, MAX_REPLY};
    let Ok(Some((reply, used))) = parse(data) else {
        return;
    };
    assert!(used <= data.len() && used <= MAX_REPLY, "{reply:?} took {used}");
    for end in 0..used {
        assert_eq!(parse(&data[..end]), Ok(None), "prefix of {end} bytes");
    }
    assert_eq!(parse(&data[..used]), Ok(Some((reply, used))));
}

/// HTTP/2 frame headers as they pass (`http2::Frames`) and the count of a backend's
/// header blocks on weir's streams (`http2::HeaderBlocks`): a seed byte (the split
/// windows and the blocks a stream may carry), then frames. Fed whole, in seeded splits
/// and byte by byte, the walk gives what a plain walk of the whole input gives; and the
/// count, with a SETTINGS frame's stream id opened and a RST_STREAM frame's let go (as
/// weir opens and lets go of streams), refuses exactly the HEADERS frames a plain count
/// puts past the limit, and those on a stream above the highest opened.
pub fn h2_frames(data: &[u8]) {
    let Some((&seed, wire)) = data.split_first() else { return };
    let expected = plain_frames(wire);
    let mut state = u32::from(seed) | 1;
    let windows: [&mut dyn FnMut() -> usize; 3] = [
        &mut || wire.len().max(1),
        &mut || 1,
        &mut || {
            // xorshift: cheap, deterministic windows of 1 to 32 bytes.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 32) as usize + 1
        },
    ];
    for window in windows {
        let mut frames = weir::http2::Frames::default();
        let mut got = Vec::new();
        let mut rest = wire;
        while !rest.is_empty() {
            let (mut chunk, after) = rest.split_at(window().min(rest.len()));
            while let Some(passed) = frames.next(&mut chunk) {
                got.push(passed);
            }
            rest = after;
        }
        assert_eq!(got, expected, "the walk of {wire:?} depends on its splits");
    }
    header_blocks(&expected, u32::from(seed % 20));
}

/// What a walk of the whole of `wire` passes, frame by frame.
fn plain_frames(wire: &[u8]) -> Vec<weir::http2::Passed> {
    use weir::http2::{FrameHead, Passed};
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(head) = wire.get(at..at + 9) {
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        out.push(Passed::Head(FrameHead { kind: head[3], flags: head[4], stream }));
        at += 9 + len;
        if at > wire.len() {
            break;
        }
        out.push(Passed::End);
    }
    out
}

/// `HeaderBlocks` over `passed` (SETTINGS opens its stream id, RST_STREAM lets it go),
/// against a plain count of the same.
fn header_blocks(passed: &[weir::http2::Passed], per_stream: u32) {
    use weir::http2::{HeaderBlocks, Passed, HEADERS, RST_STREAM, SETTINGS};
    let blocks = HeaderBlocks::new(per_stream);
    let mut plain = std::collections::HashMap::<u32, u32>::new();
    let mut highest = 0;
    for &passed in passed {
        let Passed::Head(head) = passed else { continue };
        match head.kind {
            SETTINGS => {
                blocks.open(head.stream);
                plain.insert(head.stream, 0);
                highest = highest.max(head.stream);
            }
            RST_STREAM => {
                blocks.close(head.stream);
                plain.remove(&head.stream);
            }
            _ => {}
        }
        let refused = blocks.frame(head);
        let expected = head.kind == HEADERS
            && (head.stream > highest
                || plain.get_mut(&head.stream).is_some_and(|count| {
                    *count += 1;
                    *count > per_stream
                }));
        assert_eq!(refused, expected, "at {head:?}");
        assert_eq!(blocks.counted(), plain.len());
        if refused {
            return;
        }
    }
}
