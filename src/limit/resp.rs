//! The few RESP2 pieces weir's Redis store needs: a command as an array of bulk strings,
//! and the parse of one reply. Replies come from the network, so the parser is bounded
//! everywhere (line length, bulk size, array length, nesting) and never panics on any
//! input (`fuzz/fuzz_targets/resp.rs`).

/// Longest reply weir reads: the GCRA script answers two integers, an error a line.
pub const MAX_REPLY: usize = 4096;
/// Most elements of an array reply: the script answers two.
const MAX_ARRAY: usize = 16;
/// Deepest nesting of arrays: the script's answer is one flat array.
const MAX_DEPTH: usize = 2;

/// One RESP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:42`.
    Integer(i64),
    /// `$3\r\nabc`, or `$-1` (nil) as `None`.
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`, or `*-1` (nil) as an empty array.
    Array(Vec<Reply>),
}

/// Why bytes are not a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// An unknown type byte, a bad number or a missing CRLF.
    Syntax,
    /// Past one of the bounds above.
    TooLarge,
}

/// Appends the command `args` as RESP (an array of bulk strings).
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// The reply at the front of `input` and its length in bytes; `Ok(None)` when more bytes
/// are needed.
pub fn parse(input: &[u8]) -> Result<Option<(Reply, usize)>, Malformed> {
    if input.len() > MAX_REPLY {
        return Err(Malformed::TooLarge);
    }
    parse_at(input, 0)
}

/// The line at the front of `input` (without CRLF) and the bytes it takes.
fn line(input: &[u8]) -> Result<Option<(&[u8], usize)>, Malformed> {
    match input.windows(2).position(|pair| pair == b"\r\n") {
        Some(end) => Ok(Some((&input[..end], end + 2))),
        None if input.len() > MAX_REPLY => Err(Malformed::TooLarge),
        None => Ok(None),
    }
}

fn number(text: &[u8]) -> Result<i64, Malformed> {
    let text = std::str::from_utf8(text).map_err(|_| Malformed::Syntax)?;
    text.parse().map_err(|_| Malformed::Syntax)
}

fn parse_at(input: &[u8], depth: usize) -> Result<Option<(Reply, usize)>, Malformed> {
    let Some(&kind) = input.first() else { return Ok(None) };
    let Some((text, used)) = line(&input[1..])? else { return Ok(None) };
    let used = used + 1;
    let utf8 = |text: &[u8]| String::from_utf8_lossy(text).into_owned();
    match kind {
        b'+' => Ok(Some((Reply::Simple(utf8(text)), used))),
        b'-' => Ok(Some((Reply::Error(utf8(text)), used))),
        b':' => Ok(Some((Reply::Integer(number(text)?), used))),
        b'$' => bulk(input, number(text)?, used),
        b'*' => array(input, number(text)?, used, depth),
        _ => Err(Malformed::Syntax),
    }
}

fn bulk(input: &[u8], len: i64, used: usize) -> Result<Option<(Reply, usize)>, Malformed> {
    if len == -1 {
        return Ok(Some((Reply::Bulk(None), used)));
    }
    let len = usize::try_from(len).map_err(|_| Malformed::Syntax)?;
    if len > MAX_REPLY {
        return Err(Malformed::TooLarge);
    }
    let Some(rest) = input.get(used..used + len + 2) else { return Ok(None) };
    if &rest[len..] != b"\r\n" {
        return Err(Malformed::Syntax);
    }
    Ok(Some((Reply::Bulk(Some(rest[..len].to_vec())), used + len + 2)))
}

fn array(
    input: &[u8],
    len: i64,
    mut used: usize,
    depth: usize,
) -> Result<Option<(Reply, usize)>, Malformed> {
    if len == -1 {
        return Ok(Some((Reply::Array(Vec::new()), used)));
    }
    let len = usize::try_from(len).map_err(|_| Malformed::Syntax)?;
    if len > MAX_ARRAY || depth >= MAX_DEPTH {
        return Err(Malformed::TooLarge);
    }
    let mut items = Vec::with_capacity(len);
    for _ in 0..len {
        let Some((item, taken)) = parse_at(&input[used..], depth + 1)? else { return Ok(None) };
        items.push(item);
        used += taken;
    }
    Ok(Some((Reply::Array(items), used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_whole_or_ask_for_more() {
        let reply = b"*2\r\n:1\r\n:250\r\n";
        let want = Reply::Array(vec![Reply::Integer(1), Reply::Integer(250)]);
        assert_eq!(parse(reply), Ok(Some((want, reply.len()))));
        for cut in 0..reply.len() {
            assert_eq!(parse(&reply[..cut]), Ok(None), "{cut}");
        }
        let error = b"-NOSCRIPT No matching script\r\n";
        assert!(
            matches!(parse(error), Ok(Some((Reply::Error(e), _))) if e.starts_with("NOSCRIPT"))
        );
        assert_eq!(parse(b"$-1\r\n"), Ok(Some((Reply::Bulk(None), 5))));
        assert_eq!(parse(b"$2\r\nab\r\n"), Ok(Some((Reply::Bulk(Some(b"ab".to_vec())), 8))));
    }

    #[test]
    fn hostile_replies_are_refused() {
        assert_eq!(parse(b"?\r\n"), Err(Malformed::Syntax));
        assert_eq!(parse(b":x\r\n"), Err(Malformed::Syntax));
        assert_eq!(parse(b"$2\r\nabcd"), Err(Malformed::Syntax));
        assert_eq!(parse(b"$99999999\r\n"), Err(Malformed::TooLarge));
        assert_eq!(parse(b"*100\r\n"), Err(Malformed::TooLarge));
        assert_eq!(parse(b"*1\r\n*1\r\n*1\r\n:1\r\n"), Err(Malformed::TooLarge));
        assert_eq!(parse(b"$-5\r\n"), Err(Malformed::Syntax));
        assert_eq!(parse(&[b'+'; MAX_REPLY + 1]), Err(Malformed::TooLarge));
        let mut out = Vec::new();
        command(&mut out, &[b"GET", b"k"]);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }
}
