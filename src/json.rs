//! A tiny JSON writer for the admin API, the state file and the access log.
//!
//! weir writes a handful of fixed documents and never parses JSON on the request path, so
//! a forty-line writer with correct string escaping serves better than a serialization
//! framework in the dependency tree. The writer tracks only whether the next value needs
//! a comma; callers nest objects and arrays themselves.

use std::fmt::Write as _;

/// Builds one JSON document into a `String`.
#[derive(Debug, Default)]
pub struct JsonWriter {
    out: String,
    need_comma: bool,
}

impl JsonWriter {
    /// An empty writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> JsonWriter {
        JsonWriter { out: String::with_capacity(capacity), need_comma: false }
    }

    /// The document written so far.
    pub fn finish(self) -> String {
        self.out
    }

    fn separate(&mut self) {
        if self.need_comma {
            self.out.push(',');
        }
    }

    /// Opens an object (`{`).
    pub fn begin_object(&mut self) {
        self.separate();
        self.out.push('{');
        self.need_comma = false;
    }

    /// Closes an object (`}`).
    pub fn end_object(&mut self) {
        self.out.push('}');
        self.need_comma = true;
    }

    /// Opens an array (`[`).
    pub fn begin_array(&mut self) {
        self.separate();
        self.out.push('[');
        self.need_comma = false;
    }

    /// Closes an array (`]`).
    pub fn end_array(&mut self) {
        self.out.push(']');
        self.need_comma = true;
    }

    /// Writes an object key; the next call writes its value.
    pub fn key(&mut self, key: &str) {
        self.separate();
        escape_into(&mut self.out, key);
        self.out.push(':');
        self.need_comma = false;
    }

    /// Writes a string value.
    pub fn string(&mut self, value: &str) {
        self.separate();
        escape_into(&mut self.out, value);
        self.need_comma = true;
    }

    /// Writes an unsigned integer.
    pub fn u64(&mut self, value: u64) {
        self.separate();
        let _ = write!(self.out, "{value}");
        self.need_comma = true;
    }

    /// Writes a number, or `null` when it is not finite (JSON has no NaN or infinity).
    pub fn f64(&mut self, value: f64) {
        self.separate();
        if value.is_finite() {
            let _ = write!(self.out, "{value}");
        } else {
            self.out.push_str("null");
        }
        self.need_comma = true;
    }

    /// Writes `true` or `false`.
    pub fn bool(&mut self, value: bool) {
        self.separate();
        self.out.push_str(if value { "true" } else { "false" });
        self.need_comma = true;
    }

    /// Writes `null`.
    pub fn null(&mut self) {
        self.separate();
        self.out.push_str("null");
        self.need_comma = true;
    }

    /// Writes a string, or `null` for `None`.
    pub fn opt_string(&mut self, value: Option<&str>) {
        match value {
            Some(value) => self.string(value),
            None => self.null(),
        }
    }

    /// Writes a number, or `null` for `None`.
    pub fn opt_f64(&mut self, value: Option<f64>) {
        match value {
            Some(value) => self.f64(value),
            None => self.null(),
        }
    }
}

/// Appends `value` as a quoted JSON string. Quotes, backslashes and every control
/// character are escaped; other characters pass through as UTF-8 (RFC 8259 section 7).
pub fn escape_into(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_document_is_valid() {
        let mut json = JsonWriter::default();
        json.begin_object();
        json.key("name");
        json.string("a\"b\\c\n\u{1}é");
        json.key("list");
        json.begin_array();
        json.u64(1);
        json.f64(f64::NAN);
        json.begin_object();
        json.key("ok");
        json.bool(true);
        json.end_object();
        json.opt_string(None);
        json.end_array();
        json.key("x");
        json.opt_f64(Some(1.5));
        json.end_object();
        let text = json.finish();
        assert_eq!(text, r#"{"name":"a\"b\\c\n\u0001é","list":[1,null,{"ok":true},null],"x":1.5}"#);
        let parsed: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed["name"], "a\"b\\c\n\u{1}é");
    }
}
