//! `[server.http2]`: the limits of each HTTP/2 client connection.

use super::{Slot, Value, Walker};
use crate::config::http2::{CONCURRENT_STREAMS, CONNECTION_WINDOW, FRAME_SIZE, STREAM_WINDOW};
use crate::config::Http2Config;

impl Walker {
    /// `[server.http2]`; keys left out keep their defaults.
    pub(super) fn server_http2(&mut self, value: &Value<'_>) -> Http2Config {
        let mut out = Http2Config::default();
        for (key, value) in self.table("http2", value).into_iter().flatten() {
            let (low, high) = (*CONCURRENT_STREAMS.start(), *CONCURRENT_STREAMS.end());
            let slot = match key.get_ref().as_ref() {
                "max_concurrent_streams" => Slot::Count(&mut out.max_concurrent_streams, low, high),
                "initial_stream_window" => {
                    Slot::Size(&mut out.initial_stream_window, STREAM_WINDOW)
                }
                "initial_connection_window" => {
                    Slot::Size(&mut out.initial_connection_window, CONNECTION_WINDOW)
                }
                "max_frame_size" => Slot::Size(&mut out.max_frame_size, FRAME_SIZE),
                "websocket" => Slot::Flag(&mut out.websocket),
                _ => Slot::Unknown("[server.http2]"),
            };
            self.fill(key, value, slot);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_str;
    use crate::config::Http2Config;

    fn errors(text: &str) -> Vec<String> {
        match parse_str("weir.toml", text) {
            Ok(config) => panic!("expected errors, got {:?}", config.server.http2),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn every_limit_is_read_with_units() {
        let text = "[server.http2]\nmax_concurrent_streams = 250\n\
                    initial_stream_window = \"256KiB\"\ninitial_connection_window = \"4MiB\"\n\
                    max_frame_size = 32768\nwebsocket = false\n";
        let config = parse_str("weir.toml", text).unwrap();
        let want = Http2Config {
            max_concurrent_streams: 250,
            initial_stream_window: 256 * 1024,
            initial_connection_window: 4 * 1024 * 1024,
            max_frame_size: 32 * 1024,
            websocket: false,
        };
        assert_eq!(config.server.http2, want);
        let config = parse_str("weir.toml", "[server]\nworkers = 1\n").unwrap();
        assert_eq!(config.server.http2, Http2Config::default());
    }

    #[test]
    fn bad_values_are_refused_where_they_are_written() {
        let shown = errors("[server.http2]\nmax_concurrent_streams = 0\n");
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(shown[0].starts_with("weir.toml:2:26: "), "{shown:?}");
        assert!(shown[0].contains("max_concurrent_streams"), "{shown:?}");
        let shown = errors("[server.http2]\nmax_frame_size = \"8KiB\"\n");
        assert!(shown[0].starts_with("weir.toml:2:18: "), "{shown:?}");
        let shown = errors("[server.http2]\ninitial_connection_window = 1000\n");
        assert!(shown[0].starts_with("weir.toml:2:29: "), "{shown:?}");
        let shown = errors("[server.http2]\ninitial_stream_window = \"4GiB\"\n");
        assert!(shown[0].starts_with("weir.toml:2:25: "), "{shown:?}");
        let shown = errors("[server.http2]\nmax_streams = 10\n");
        assert!(shown[0].starts_with("weir.toml:2:1: "), "{shown:?}");
        assert!(shown[0].contains("[server.http2]"), "{shown:?}");
        let shown = errors("[server]\nhttp2 = 5\n");
        assert!(shown[0].starts_with("weir.toml:2:9: "), "{shown:?}");
    }
}
