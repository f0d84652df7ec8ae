//! DNS messages (RFC 1035) as the stub resolver needs them: an A or AAAA query out, the
//! answer section of the reply in.
//!
//! Decoding trusts nothing in the message: every read is bounds-checked, a name is at most
//! 255 bytes on the wire, and a compression pointer must point before itself, so with the
//! length bound no pointer chain can loop. Only the question and the answer section are
//! read; authority and additional records are never needed to follow A, AAAA and CNAME.

pub use crate::config::dns::check_name;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Record type A (IPv4 address).
pub const TYPE_A: u16 = 1;
/// Record type CNAME (alias).
pub const TYPE_CNAME: u16 = 5;
/// Record type AAAA (IPv6 address).
pub const TYPE_AAAA: u16 = 28;
/// Record type OPT (EDNS(0) pseudo-record).
const TYPE_OPT: u16 = 41;
/// Class IN (the Internet).
const CLASS_IN: u16 = 1;
/// The UDP payload size weir advertises with EDNS(0): the DNS Flag Day 2020 value, which
/// crosses any path without IP fragmentation. Larger answers come truncated, then by TCP.
pub const EDNS_PAYLOAD: u16 = 1232;
/// Response code: no error.
pub const RCODE_NOERROR: u8 = 0;
/// Response code: the name does not exist.
pub const RCODE_NXDOMAIN: u8 = 3;
/// Fixed header length.
const HEADER_LEN: usize = 12;
/// Longest name on the wire, length octets included (RFC 1035 §2.3.4).
const MAX_NAME_WIRE: usize = 255;
/// Most compression pointers followed in one name; the backwards rule already bounds
/// them, this only caps the work on a hostile message.
const MAX_JUMPS: usize = 64;
/// Most CNAME records followed from the question name to an address, as most stub
/// resolvers allow (glibc stops at a handful too).
pub const MAX_CNAME_HOPS: usize = 8;
/// Most answer records read from one message: far above any real answer, and a bound
/// on the work a hostile 64 KiB message can cause.
const MAX_ANSWERS: usize = 4096;

/// `name` as it is compared: lowercase, without the trailing dot.
pub fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// A recursive query for `name` (checked by [`check_name`]) of type `qtype`, with an
/// EDNS(0) record advertising [`EDNS_PAYLOAD`].
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    debug_assert!(check_name(name).is_ok(), "query for an unchecked name");
    let mut out = Vec::with_capacity(HEADER_LEN + name.len() + 2 + 4 + 11);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes()); // RD: ask for recursion.
    for count in [1u16, 0, 0, 1] {
        out.extend_from_slice(&count.to_be_bytes());
    }
    for label in normalize(name).split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    // OPT: root owner, payload size in the class field, no extended flags, no options.
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
    out.extend_from_slice(&[0; 6]);
    out
}

/// The parts of a reply the resolver reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Query id.
    pub id: u16,
    /// TC: the reply was cut to fit UDP; ask again over TCP.
    pub truncated: bool,
    /// Response code (the low four bits; weir sends no EDNS flags that extend it).
    pub rcode: u8,
    /// The question, normalized.
    pub question: (String, u16),
    /// Answer records; empty when `truncated`.
    pub answers: Vec<Record>,
}

/// One answer record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Owner name, normalized.
    pub owner: String,
    /// Time to live in seconds (RFC 2181 §8: a value with the top bit set counts as 0).
    pub ttl: u32,
    /// What the record says.
    pub data: Data,
}

/// The data of an answer record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// An A or AAAA record.
    Address(IpAddr),
    /// A CNAME record: the owner is an alias of this name.
    Alias(String),
    /// Anything else (another type or class).
    Other,
}

/// Bounds-checked reads from a message.
struct Reader<'m> {
    msg: &'m [u8],
    pos: usize,
}

impl Reader<'_> {
    fn bytes(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.msg.len());
        let end = end.ok_or_else(|| "message ends early".to_string())?;
        let out = &self.msg[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn name(&mut self) -> Result<String, String> {
        let (name, next) = read_name(self.msg, self.pos)?;
        self.pos = next;
        Ok(name)
    }
}

/// Decodes a reply: header, question and answer section.
pub fn decode(msg: &[u8]) -> Result<Message, String> {
    let mut r = Reader { msg, pos: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    let counts = [r.u16()?, r.u16()?, r.u16()?, r.u16()?];
    if flags & 0x8000 == 0 {
        return Err("not a response".to_string());
    }
    if (flags >> 11) & 0xF != 0 {
        return Err("not a standard query response".to_string());
    }
    if counts[0] != 1 {
        return Err(format!("{} questions in the reply, expected 1", counts[0]));
    }
    let question = (r.name()?, r.u16()?);
    if r.u16()? != CLASS_IN {
        return Err("question of another class than IN".to_string());
    }
    let truncated = flags & 0x0200 != 0;
    let rcode = (flags & 0xF) as u8;
    let mut answers = Vec::new();
    if !truncated {
        let count = usize::from(counts[1]);
        if count > MAX_ANSWERS {
            return Err(format!("{count} answer records, more than {MAX_ANSWERS}"));
        }
        answers.reserve(count);
        for _ in 0..count {
            answers.push(record(&mut r)?);
        }
    }
    Ok(Message { id, truncated, rcode, question, answers })
}

/// One resource record at the reader's position.
fn record(r: &mut Reader<'_>) -> Result<Record, String> {
    let owner = r.name()?;
    let (kind, class, ttl) = (r.u16()?, r.u16()?, r.u32()?);
    let ttl = if ttl & 0x8000_0000 != 0 { 0 } else { ttl };
    let len = usize::from(r.u16()?);
    let start = r.pos;
    let rdata = r.bytes(len)?;
    let data = match (class, kind, len) {
        (CLASS_IN, TYPE_A, 4) => {
            Data::Address(IpAddr::V4(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3])))
        }
        (CLASS_IN, TYPE_AAAA, 16) => {
            let octets: [u8; 16] = rdata.try_into().map_err(|_| "bad AAAA length")?;
            Data::Address(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        (CLASS_IN, TYPE_A | TYPE_AAAA, _) => return Err(format!("address record of {len} bytes")),
        (CLASS_IN, TYPE_CNAME, _) => {
            let (target, end) = read_name(r.msg, start)?;
            if end != start + len {
                return Err("CNAME data does not match its length".to_string());
            }
            Data::Alias(target)
        }
        _ => Data::Other,
    };
    Ok(Record { owner, ttl, data })
}

/// Reads the (possibly compressed) name at `start`; returns it normalized, and where the
/// data after it begins.
fn read_name(msg: &[u8], start: usize) -> Result<(String, usize), String> {
    let (mut pos, mut wire, mut jumps) = (start, 0usize, 0usize);
    let mut after = None;
    let mut name = String::new();
    loop {
        let len = *msg.get(pos).ok_or("name runs past the message")?;
        match len & 0xC0 {
            0x00 if len == 0 => {
                pos += 1;
                break;
            }
            0x00 => {
                let len = usize::from(len);
                let label = msg.get(pos + 1..pos + 1 + len).ok_or("label runs past the message")?;
                wire += len + 1;
                if wire + 1 > MAX_NAME_WIRE {
                    return Err("name longer than 255 bytes".to_string());
                }
                if !name.is_empty() {
                    name.push('.');
                }
                push_label(&mut name, label);
                pos += 1 + len;
            }
            0xC0 => {
                let low = *msg.get(pos + 1).ok_or("pointer runs past the message")?;
                let target = usize::from(len & 0x3F) << 8 | usize::from(low);
                jumps += 1;
                if target >= pos || jumps > MAX_JUMPS {
                    return Err("compression pointer does not point backwards".to_string());
                }
                after.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return Err("unknown label type".to_string()),
        }
    }
    Ok((name, after.unwrap_or(pos)))
}

/// Appends a label as text, lowercase; bytes that are not plain name characters (a dot
/// inside a label, controls, non-ASCII) are escaped as `\DDD`, so they never compare
/// equal to a name weir asked for.
fn push_label(name: &mut String, label: &[u8]) {
    for &b in label {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            name.push(char::from(b.to_ascii_lowercase()));
        } else {
            name.push_str(&format!("\\{b:03}"));
        }
    }
}

/// What a reply's answers say about a name: its addresses of one type, reached through
/// at most [`MAX_CNAME_HOPS`] aliases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// Addresses of the final name, in answer order.
    pub addrs: Vec<IpAddr>,
    /// Lowest TTL over the records used (aliases and addresses); `None` if none was used.
    pub ttl: Option<u32>,
    /// The last name reached: the question name if no alias applied.
    pub name: String,
}

/// Follows the aliases of `name` through `answers` to its addresses of type `qtype`.
pub fn follow(answers: &[Record], name: &str, qtype: u16) -> Result<Chain, String> {
    let mut chain = Chain { addrs: Vec::new(), ttl: None, name: normalize(name) };
    let wanted = |ip: &IpAddr| ip.is_ipv4() == (qtype == TYPE_A);
    for _ in 0..=MAX_CNAME_HOPS {
        for record in answers.iter().filter(|r| r.owner == chain.name) {
            if let Data::Address(ip) = &record.data {
                if wanted(ip) && !chain.addrs.contains(ip) {
                    chain.addrs.push(*ip);
                    chain.ttl = Some(chain.ttl.map_or(record.ttl, |t| t.min(record.ttl)));
                }
            }
        }
        if !chain.addrs.is_empty() {
            return Ok(chain);
        }
        let alias = answers.iter().find_map(|r| match &r.data {
            Data::Alias(target) if r.owner == chain.name => Some((target, r.ttl)),
            _ => None,
        });
        let Some((target, ttl)) = alias else {
            return Ok(chain);
        };
        chain.ttl = Some(chain.ttl.map_or(ttl, |t| t.min(ttl)));
        chain.name = target.clone();
    }
    Err(format!("more than {MAX_CNAME_HOPS} CNAME records in a row"))
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
