//! The config parser: `Config::from_toml` on one config file.
//! The property checked is in `cutover::fuzzing::config_parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cutover::fuzzing::config_parse(data));
