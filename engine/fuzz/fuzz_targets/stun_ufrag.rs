#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tern_testkit::fuzzing::stun_ufrag(data));
