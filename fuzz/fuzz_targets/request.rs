//! The request head with its body, checked by the strict oracle; see weir_fuzz::request.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::request::check(data));
