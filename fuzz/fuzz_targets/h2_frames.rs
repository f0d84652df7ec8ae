//! HTTP/2 frame headers walked as they pass, and header blocks counted per stream. See weir_fuzz::simple::h2_frames.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::simple::h2_frames(data));
