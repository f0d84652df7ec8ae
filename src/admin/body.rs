//! Reading admin API requests: JSON bodies checked field by field with the config file's
//! rules, percent-encoded path segments, and query flags.
//!
//! Bodies are parsed with `serde_json` (bounded by the 1 MiB body limit and its own
//! recursion limit), never trusted: every field is typed and ranged here, and a field
//! the call does not know is an error, as an unknown key in the config file is.

use serde_json::{Map, Value};

use super::http::{Request, Response};
use super::Refusal;
use crate::config::parse::value;
use crate::config::HashKey;
use crate::config::{BackendAddress, BackendConfig, StrategyKind, MAX_WEIGHT};
use crate::json::JsonWriter;

/// Most backends in one `POST /api/v1/pools` body; a pool of more is a config file's job.
const MAX_BODY_BACKENDS: usize = 10_000;

fn bad(message: impl Into<String>) -> Refusal {
    Refusal::new(400, message)
}

/// The fields of a JSON object body, taken one by one.
#[derive(Debug)]
pub struct Fields(Map<String, Value>);

/// The body of `request` as a JSON object.
pub fn object(request: &Request) -> Result<Fields, Refusal> {
    if request.body.is_empty() {
        return Err(bad("a JSON object body is needed"));
    }
    match serde_json::from_slice(&request.body) {
        Ok(Value::Object(map)) => Ok(Fields(map)),
        Ok(_) => Err(bad("the body must be a JSON object")),
        Err(error) => Err(bad(format!("malformed JSON: {error}"))),
    }
}

impl Fields {
    fn take(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key).filter(|value| !value.is_null())
    }

    fn text(&mut self, key: &str) -> Result<Option<String>, Refusal> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(bad(format!("`{key}` must be a string"))),
        }
    }

    fn required(&mut self, key: &str) -> Result<String, Refusal> {
        self.text(key)?.ok_or_else(|| bad(format!("`{key}` is required")))
    }

    /// A required pool name.
    pub fn pool_name(&mut self, key: &str) -> Result<String, Refusal> {
        value::pool_name(&self.required(key)?).map_err(bad)
    }

    /// A required backend address.
    pub fn address(&mut self, key: &str) -> Result<BackendAddress, Refusal> {
        value::backend_address(&self.required(key)?).map_err(bad)
    }

    /// An optional strategy; round robin when absent.
    pub fn strategy(&mut self, key: &str) -> Result<StrategyKind, Refusal> {
        let name = self.text(key)?;
        name.map_or(Ok(StrategyKind::RoundRobin), |name| value::strategy(&name).map_err(bad))
    }

    /// An optional `consistent_hash` key.
    pub fn hash_key(&mut self, key: &str) -> Result<Option<HashKey>, Refusal> {
        self.text(key)?.map(|text| HashKey::parse(&text).map_err(bad)).transpose()
    }

    /// An optional weight, 0 to [`MAX_WEIGHT`].
    pub fn weight(&mut self, key: &str) -> Result<Option<u32>, Refusal> {
        let Some(value) = self.take(key) else { return Ok(None) };
        let weight =
            value.as_u64().and_then(|w| u32::try_from(w).ok()).filter(|w| *w <= MAX_WEIGHT);
        let message = format!("`{key}` must be an integer between 0 and {MAX_WEIGHT}");
        weight.map(Some).ok_or_else(|| bad(message))
    }

    /// An optional `"drain"` (true) or `"active"` (false).
    pub fn drain(&mut self, key: &str) -> Result<Option<bool>, Refusal> {
        match self.text(key)?.as_deref() {
            None => Ok(None),
            Some("drain") => Ok(Some(true)),
            Some("active") => Ok(Some(false)),
            Some(_) => Err(bad(format!("`{key}` must be \"drain\" or \"active\""))),
        }
    }

    /// An optional position in a list.
    pub fn index(&mut self, key: &str) -> Result<Option<usize>, Refusal> {
        let Some(value) = self.take(key) else { return Ok(None) };
        let index = value.as_u64().and_then(|i| usize::try_from(i).ok());
        index.map(Some).ok_or_else(|| bad(format!("`{key}` must be a non-negative integer")))
    }

    /// An optional list of backends, each `"HOST:PORT"` or `{"address", "weight"?}`.
    pub fn backends(&mut self, key: &str) -> Result<Vec<BackendConfig>, Refusal> {
        let items = match self.take(key) {
            None => return Ok(Vec::new()),
            Some(Value::Array(items)) if items.len() <= MAX_BODY_BACKENDS => items,
            Some(_) => return Err(bad(format!("`{key}` must be an array of backends"))),
        };
        let mut backends = Vec::with_capacity(items.len());
        for item in items {
            let mut fields = match item {
                Value::String(text) => Fields(Map::from_iter([("address".into(), text.into())])),
                Value::Object(map) => Fields(map),
                _ => return Err(bad("a backend is \"HOST:PORT\" or {\"address\": ...}")),
            };
            backends.push(fields.backend()?);
            fields.finish()?;
        }
        Ok(backends)
    }

    /// A backend: `address` (required), `weight` (default 1), `resolve` (default false;
    /// true or "srv").
    pub fn backend(&mut self) -> Result<BackendConfig, Refusal> {
        let resolve = value::resolve_json(self.take("resolve").as_ref()).map_err(bad)?;
        let address = value::backend_for(&self.required("address")?, resolve).map_err(bad)?;
        let weight = self.weight("weight")?.unwrap_or(1);
        Ok(BackendConfig { address, weight, resolve })
    }

    /// Refuses fields nobody took.
    pub fn finish(self) -> Result<(), Refusal> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(key) => Err(bad(format!("unknown field `{key}`"))),
        }
    }

    /// The fields nobody took yet.
    pub fn rest(self) -> Map<String, Value> {
        self.0
    }
}

/// The `HOST:PORT` identity of an address given in a path.
pub fn identity(address: &str) -> Result<String, Refusal> {
    let parsed = BackendAddress::parse(address).map_err(|m| Refusal::new(404, m))?;
    Ok(parsed.authority())
}

/// Decodes `%XX` escapes in a path segment; `None` when malformed or not UTF-8.
pub fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    // Bounded by the segment length: each pass consumes one or three bytes.
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = segment.get(index + 1..index + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `query` sets `name` to `true` or `1`.
pub fn query_flag(query: &str, name: &str) -> bool {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .any(|(key, value)| key == name && (value.eq_ignore_ascii_case("true") || value == "1"))
}

/// `{"error": "first; second", "errors": [...]}` for a refused reload.
pub fn errors_response(status: u16, errors: &[String]) -> Response {
    let mut json =
        JsonWriter::with_capacity(64 + errors.iter().map(String::len).sum::<usize>() * 2);
    json.begin_object();
    json.key("error");
    json.string(&errors.join("; "));
    json.key("errors");
    json.begin_array();
    errors.iter().for_each(|error| json.string(error));
    json.end_array();
    json.end_object();
    Response::json(status, json.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Fields {
        let request = Request { body: text.as_bytes().to_vec(), ..Request::default() };
        object(&request).expect("an object")
    }

    #[test]
    fn refuses_bad_bodies() {
        for text in ["", "{", "[1]", "\"x\"", "{\"a\":1,}"] {
            let request = Request { body: text.as_bytes().to_vec(), ..Request::default() };
            assert_eq!(object(&request).unwrap_err().status, 400, "{text}");
        }
    }

    #[test]
    fn checks_fields_by_the_file_rules() {
        assert!(fields(r#"{"weight": 10001}"#).weight("weight").is_err());
        assert!(fields(r#"{"weight": -1}"#).weight("weight").is_err());
        assert!(fields(r#"{"weight": 1.5}"#).weight("weight").is_err());
        assert_eq!(fields(r#"{"weight": 10000}"#).weight("weight").unwrap(), Some(10_000));
        assert!(fields(r#"{"address": "h:0"}"#).address("address").is_err());
        // As in the file, https backends are accepted (issue #6).
        assert!(fields(r#"{"address": "https://h:1"}"#).address("address").is_ok());
        assert!(fields(r#"{"name": "a b"}"#).pool_name("name").is_err());
        assert!(fields(r#"{"state": "off"}"#).drain("state").is_err());
        assert!(fields(r#"{"extra": 1}"#).finish().unwrap_err().message.contains("extra"));
        let list = fields(r#"{"b": ["127.0.0.1:1", {"address": "127.0.0.1:2", "weight": 3}]}"#)
            .backends("b")
            .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].weight, 3);
    }

    #[test]
    fn decodes_paths_and_queries() {
        assert_eq!(percent_decode("%5B%3A%3A1%5D%3A80").as_deref(), Some("[::1]:80"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%+1"), None);
        assert_eq!(percent_decode("%é"), None);
        assert!(query_flag("a=1&now=true", "now"));
        assert!(query_flag("now=1", "now"));
        assert!(!query_flag("now=false", "now"));
    }
}
